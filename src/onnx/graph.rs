//! A small builder for ONNX graphs: nodes with fresh output names,
//! initializers, typed inputs and outputs, and attributes. The exporter
//! (`export.rs`, `operators.rs`, `scan.rs`) says what to compute; this file
//! only says how it is written down.

use super::proto::*;

/// A dimension of a graph input or output: fixed, or named and dynamic.
#[derive(Clone, Copy, Debug)]
pub enum Dim {
    Fixed(usize),
    Named(&'static str),
    /// Neither: a Scan body's batch dimension, which the loop's inputs fix.
    Unknown,
}

/// One graph (the main graph or a Scan body) under construction.
pub struct Graph {
    /// Prefix of every name this graph makes, so that a body's names never
    /// shadow the main graph's (ONNX requires names unique across scopes).
    prefix: String,
    next: usize,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
}

impl Graph {
    pub fn new(prefix: &str) -> Graph {
        Graph {
            prefix: prefix.to_string(),
            next: 0,
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// A name no other value in the model has.
    pub fn fresh(&mut self, hint: &str) -> String {
        self.next += 1;
        format!("{}{}_{}", self.prefix, hint, self.next)
    }

    /// A node with one output; returns the output's name.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.op_to(op, inputs, &[&out], attrs);
        out
    }

    /// A node with `n` outputs; returns their names.
    pub fn op_n(
        &mut self,
        op: &str,
        inputs: &[&str],
        n: usize,
        attrs: Vec<AttributeProto>,
    ) -> Vec<String> {
        let outs: Vec<String> = (0..n).map(|_| self.fresh(&op.to_lowercase())).collect();
        let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
        self.op_to(op, inputs, &refs, attrs);
        outs
    }

    /// A node writing the named outputs (graph outputs, body outputs). An
    /// empty name in `inputs` or `outputs` is an omitted optional one.
    pub fn op_to(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) {
        let name = self.fresh(&format!("{op}_node"));
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name,
            op_type: op.to_string(),
            domain: String::new(),
            attribute: attrs,
        });
    }

    /// An f32 initializer (a constant tensor stored in the file).
    pub fn f32_init(&mut self, hint: &str, dims: &[usize], data: &[f32]) -> String {
        self.init(hint, DataType::Float, dims, data)
    }

    /// An i64 initializer.
    pub fn i64_init(&mut self, hint: &str, dims: &[usize], data: &[i64]) -> String {
        self.init(hint, DataType::Int64, dims, data)
    }

    fn init<T: bytemuck::Pod>(
        &mut self,
        hint: &str,
        elem: DataType,
        dims: &[usize],
        data: &[T],
    ) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        let name = self.fresh(hint);
        self.initializers
            .push(tensor(&name, elem, dims, bytemuck::cast_slice(data)));
        name
    }

    /// A 1-D i64 constant (axes, shapes, slice bounds).
    pub fn ints(&mut self, values: &[i64]) -> String {
        self.i64_init("ints", &[values.len()], values)
    }

    /// A scalar (0-D) i64 constant.
    pub fn int(&mut self, value: i64) -> String {
        self.i64_init("int", &[], &[value])
    }

    /// A scalar (0-D) f32 constant.
    pub fn float(&mut self, value: f32) -> String {
        self.f32_init("float", &[], &[value])
    }

    pub fn input(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.inputs.push(value_info(name, elem, dims));
    }

    pub fn output(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.outputs.push(value_info(name, elem, dims));
    }

    pub fn into_proto(self, name: &str, doc: &str) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: name.to_string(),
            initializer: self.initializers,
            doc_string: doc.to_string(),
            input: self.inputs,
            output: self.outputs,
        }
    }
}

fn tensor(name: &str, elem: DataType, dims: &[usize], bytes: &[u8]) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: elem as i32,
        name: name.to_string(),
        // ONNX stores raw_data little-endian; every target we build for is.
        raw_data: bytes.to_vec(),
    }
}

fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: match *d {
                Dim::Fixed(n) => Some(DimensionValue::DimValue(n as i64)),
                Dim::Named(s) => Some(DimensionValue::DimParam(s.to_string())),
                Dim::Unknown => None,
            },
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(TensorTypeProto {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
    }
}

/// Attribute constructors.
pub mod attr {
    use super::*;

    fn base(name: &str, ty: AttributeType) -> AttributeProto {
        AttributeProto {
            name: name.to_string(),
            r#type: ty as i32,
            ..Default::default()
        }
    }
    pub fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            i: v,
            ..base(name, AttributeType::Int)
        }
    }
    pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            ints: v.to_vec(),
            ..base(name, AttributeType::Ints)
        }
    }
    pub fn string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            s: v.as_bytes().to_vec(),
            ..base(name, AttributeType::String)
        }
    }
    pub fn strings(name: &str, v: &[&str]) -> AttributeProto {
        AttributeProto {
            strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..base(name, AttributeType::Strings)
        }
    }
    pub fn graph(name: &str, g: GraphProto) -> AttributeProto {
        AttributeProto {
            g: Some(g),
            ..base(name, AttributeType::Graph)
        }
    }
    /// A one-element f32 tensor attribute (`ConstantOfShape`'s `value`).
    pub fn f32_tensor(name: &str, v: f32) -> AttributeProto {
        AttributeProto {
            t: Some(tensor("", DataType::Float, &[1], &v.to_le_bytes())),
            ..base(name, AttributeType::Tensor)
        }
    }
}
