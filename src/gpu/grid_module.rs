//! The persistent grid's module and words (see `grid.rs`): the step
//! shaders' text for it, and where its dispatches' words lie in a plan's
//! sync buffer. Apart from `grid.rs` so that the registry and the
//! recording use them without the device.

/// Words of the sync buffer before the first dispatch's: the give-up flag.
pub const HEADER_WORDS: u32 = 4;

/// Words a grid dispatch takes: each direction's arrivals and workgroups done, its flag, three spare.
pub const WORDS_PER_DISPATCH: u32 = 8;

/// The step module `source` as the persistent grid runs it: every line
/// holding `// grid: TEXT` becomes `TEXT`.
pub fn variant(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.split_once("// grid: ") {
            Some((_, text)) => text,
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}
