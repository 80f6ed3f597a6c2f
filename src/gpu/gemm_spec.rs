//! [`GemmSpec`]: one GEMM's operands — their buffers, transposes, whether
//! it adds a bias and reads C — as constants of a `gemm.wgsl` module of its
//! own (issue 20: the buffer `switch`es and the branches of the other
//! transpose fold away). Opt-in (`RECURRENT_GEMM_SPECIALISE=1`,
//! [`super::GpuOptions::specialise_gemms`]) until the device measurements
//! decide. The registry builds the module when a program is compiled: the
//! recording and its uniforms are the same either way, and so are the
//! results, bit for bit (`tests/gpu_specialise.rs`).
//!
//! `gemm.wgsl` reads each of these through a one-line function marked
//! `// spec: NAME` (`fn a_t() -> bool { return u.a_t != 0u; }`); a
//! specialised module is the file with each such line returning the constant.

use super::args::GemmArgs;

/// The operands of one GEMM dispatch, as constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmSpec {
    pub a_buf: u32,
    pub b_buf: u32,
    pub c_buf: u32,
    pub bias_buf: u32,
    pub a_t: bool,
    pub b_t: bool,
    pub has_bias: bool,
    /// `beta != 0`: C is read (accumulated into).
    pub beta_on: bool,
}

impl GemmSpec {
    /// The spec of a dispatch with arguments `a`.
    pub fn of(a: &GemmArgs) -> GemmSpec {
        GemmSpec {
            a_buf: a.a_buf,
            b_buf: a.b_buf,
            c_buf: a.c_buf,
            bias_buf: a.bias_buf,
            a_t: a.a_t != 0,
            b_t: a.b_t != 0,
            has_bias: a.has_bias != 0,
            beta_on: a.beta != 0.0,
        }
    }

    /// The spec of a GEMM-family dispatch from its uniform slot's bytes.
    pub fn of_slot(bytes: &[u8]) -> GemmSpec {
        let n = std::mem::size_of::<GemmArgs>();
        GemmSpec::of(&bytemuck::pod_read_unaligned::<GemmArgs>(&bytes[..n]))
    }

    /// The value each marked function returns, WGSL.
    fn value(&self, name: &str) -> Option<String> {
        let b = |v: bool| v.to_string();
        Some(match name {
            "a_buf" => format!("{}u", self.a_buf),
            "b_buf" => format!("{}u", self.b_buf),
            "c_buf" => format!("{}u", self.c_buf),
            "bias_buf" => format!("{}u", self.bias_buf),
            "a_t" => b(self.a_t),
            "b_t" => b(self.b_t),
            "has_bias" => b(self.has_bias),
            "beta_on" => b(self.beta_on),
            _ => return None,
        })
    }

    /// `source` (a `gemm.wgsl` module) with every `// spec: NAME` line
    /// returning this spec's constant. Panics on a marked line it does not
    /// know (a test checks every one is known).
    pub fn specialise(&self, source: &str) -> String {
        source
            .lines()
            .map(|line| match line.split_once("// spec: ") {
                Some((code, name)) => {
                    let name = name.trim();
                    let v = self
                        .value(name)
                        .unwrap_or_else(|| panic!("gemm.wgsl: unknown spec line {name}"));
                    let (sig, _) = code
                        .split_once('{')
                        .unwrap_or_else(|| panic!("gemm.wgsl: spec line {name} has no body"));
                    format!("{sig}{{ return {v}; }}")
                }
                None => line.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the marked lines of `source` give.
    fn marked(source: &str) -> Vec<&str> {
        source
            .lines()
            .filter_map(|l| l.split_once("// spec: ").map(|(_, n)| n.trim()))
            .collect()
    }

    #[test]
    fn every_marked_line_is_known_and_rewritten() {
        let src = crate::gpu::registry::Shader::Gemm.source();
        let names = marked(&src);
        assert_eq!(
            names,
            ["a_buf", "b_buf", "c_buf", "bias_buf", "a_t", "b_t", "has_bias", "beta_on"]
        );
        let spec = GemmSpec {
            a_buf: 2,
            b_buf: 0,
            c_buf: 1,
            bias_buf: 0,
            a_t: true,
            b_t: false,
            has_bias: false,
            beta_on: true,
        };
        let out = spec.specialise(&src);
        assert!(out.contains("fn a_t() -> bool { return true; }"), "{out}");
        assert!(out.contains("fn c_buf() -> u32 { return 1u; }"));
        assert!(out.contains("fn beta_on() -> bool { return true; }"));
        assert!(!out.contains("return u.a_t"));
        assert_eq!(out.lines().count(), src.lines().count());
    }
}
