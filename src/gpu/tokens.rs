//! A batch's token ids into its plan's `ints`: the ids (`[B, T]`,
//! batch-first), and for the embedding's backward each token's positions
//! ([`embed_index`]), so that `embed_backward` reads only the rows of its
//! own token (work `V·W + B·T·W`, not `V·W·B·T`: a word-level vocabulary of
//! 10,000 made every step read `dx` ten thousand times over).

use super::workspace::Workspace;

/// For ids `[b, t]` (batch-first) of a vocabulary of `vocab`: `[vocab + 1]`
/// starts and `[b·t]` rows `ti·b + bi` (of the time-major `dx`), token by
/// token, each token's in (bi, ti) order — the order the CPU path adds them
/// in. Ids outside the vocabulary (refused before any upload) are left out.
pub fn embed_index(ids: &[i32], b: usize, t: usize, vocab: usize) -> (Vec<i32>, Vec<i32>) {
    let mut offsets = vec![0i32; vocab + 1];
    for &id in ids {
        if (0..vocab as i32).contains(&id) {
            offsets[id as usize + 1] += 1;
        }
    }
    for v in 0..vocab {
        offsets[v + 1] += offsets[v];
    }
    let mut next: Vec<i32> = offsets[..vocab].to_vec();
    let mut rows = vec![0i32; offsets[vocab] as usize];
    for bi in 0..b {
        for ti in 0..t {
            let id = ids[bi * t + ti];
            if (0..vocab as i32).contains(&id) {
                let at = &mut next[id as usize];
                rows[*at as usize] = (ti * b + bi) as i32;
                *at += 1;
            }
        }
    }
    (offsets, rows)
}

/// Writes the batch's ids `[ws.b, ws.t]` (unless they are written already,
/// `with_ids` false: a kept set gathers them on the device) and their index
/// into `ints`, laid out by `ws`.
pub fn write_tokens(
    queue: &wgpu::Queue,
    ints: &wgpu::Buffer,
    ws: &Workspace,
    ids: &[i32],
    vocab: usize,
    with_ids: bool,
) {
    let at = |r: super::workspace::Region| r.off as u64 * 4;
    if with_ids {
        queue.write_buffer(ints, at(ws.ids), bytemuck::cast_slice(ids));
    }
    if ws.embed_offsets.len == 0 {
        return;
    }
    let (offsets, rows) = embed_index(ids, ws.b, ws.t, vocab);
    queue.write_buffer(ints, at(ws.embed_offsets), bytemuck::cast_slice(&offsets));
    if !rows.is_empty() {
        queue.write_buffer(ints, at(ws.embed_rows), bytemuck::cast_slice(&rows));
    }
}

#[cfg(test)]
mod tests {
    use super::embed_index;

    #[test]
    fn each_tokens_positions_in_batch_then_step_order() {
        // b = 2, t = 3: ids [[1, 0, 1], [2, 1, 0]]; rows are t*2 + b.
        let (offsets, rows) = embed_index(&[1, 0, 1, 2, 1, 0], 2, 3, 4);
        assert_eq!(offsets, [0, 2, 5, 6, 6]);
        // token 0: (b0,t1)=2, (b1,t2)=5; token 1: (b0,t0)=0, (b0,t2)=4, (b1,t1)=3; token 2: (b1,t0)=1.
        assert_eq!(rows, [2, 5, 0, 4, 3, 1]);
    }
}
