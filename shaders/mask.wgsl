// part: dropout's hash for dropout.wgsl and step_common.wgsl
// The masks of src/dropout.rs in u32 arithmetic only: element i of a site's
// mask is `scale` when the top 24 bits of mix(site_key ^ mix(i)) are at
// least `threshold`, else 0, where site_key = mix(step_key ^ mix(site)).

// The PCG hash (Jarzynski and Olano 2020), as `dropout::mix`.
fn mix(x: u32) -> u32 {
    let state = x * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// The key of a site's mask under the step's key (`StepKey::site`).
fn site_key(step_key: u32, site: u32) -> u32 {
    return mix(step_key ^ mix(site));
}

// Element i of the mask keyed `key`: 0 or `scale` (`Rate::at`).
fn mask_at(key: u32, i: u32, threshold: u32, scale: f32) -> f32 {
    return select(0.0, scale, (mix(key ^ mix(i)) >> 8u) >= threshold);
}
