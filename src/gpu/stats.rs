//! The ring of staging buffers that brings each training step's statistics
//! (loss, gradient norm) back without waiting inside a step: a step copies
//! its scalars into a free slot and maps it asynchronously; finished steps
//! are collected without blocking ([`StatsRing::poll`]) or by waiting
//! ([`StatsRing::finish`]).

use super::device::GpuDevice;
use super::grid::{GridSync, GRID_GAVE_UP};
use crate::error::{Error, Result};
use crate::model::StepStats;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// Staging buffers for step statistics: up to this many steps may be in
/// flight before `train_step` waits for the oldest (bounds the CPU run-ahead).
pub const STATS_RING: usize = 4;

/// Bytes of one step's statistics: `[4]` f32 loss, count, norm, clip coefficient.
pub const STATS_BYTES: u64 = 16;

/// Bytes of a slot: the statistics, then the persistent grid's give-up flag
/// (a u32 at [`STATS_BYTES`]; zero for a plan without a grid) and padding.
const SLOT_BYTES: u64 = 32;

/// One staging buffer of the ring and its state.
struct Slot {
    /// `[4]` f32: loss, count, norm, coef, then the grid's flag ("staging.stats.N").
    buffer: wgpu::Buffer,
    /// 0 idle, 1 mapping, 2 mapped, 3 failed.
    state: Arc<AtomicU8>,
    /// The optimizer step it holds.
    step: u64,
    /// A grid's flag was copied into it (a plan without a grid then zeroes it).
    grid_flag: bool,
}

/// The ring, the steps in flight and the statistics read back.
pub struct StatsRing {
    slots: Vec<Slot>,
    /// Slots in submission order whose stats are not collected yet.
    in_flight: VecDeque<usize>,
    /// Statistics read back but not handed out yet, oldest first.
    ready: Vec<StepStats>,
}

impl StatsRing {
    pub fn new(gpu: &GpuDevice) -> StatsRing {
        let slots = (0..STATS_RING)
            .map(|i| Slot {
                buffer: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("staging.stats.{i}")),
                    size: SLOT_BYTES,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                state: Arc::new(AtomicU8::new(0)),
                step: 0,
                grid_flag: false,
            })
            .collect();
        StatsRing {
            slots,
            in_flight: VecDeque::new(),
            ready: Vec::new(),
        }
    }

    /// A free slot (waits for the oldest step only when every slot is in flight).
    pub fn free_slot(&mut self, gpu: &GpuDevice) -> Result<usize> {
        if let Some(s) = (0..STATS_RING).find(|i| !self.in_flight.contains(i)) {
            return Ok(s);
        }
        self.wait_oldest(gpu)?;
        Ok((0..STATS_RING)
            .find(|i| !self.in_flight.contains(i))
            .expect("a slot was freed"))
    }

    /// Records the copy of a step's statistics (`STATS_BYTES` at byte `offset`
    /// of `src`) into `slot`.
    pub fn copy_into(
        &self,
        enc: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        offset: u64,
        slot: usize,
    ) {
        enc.copy_buffer_to_buffer(src, offset, &self.slots[slot].buffer, 0, STATS_BYTES);
    }

    /// Records the copy of the persistent grid's give-up flag into `slot`
    /// (`grid`: the plan's; `None` zeroes it if a grid's flag was copied
    /// there before, else leaves the zeros it was created with).
    pub fn copy_grid_flag_into(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        grid: Option<&GridSync>,
        slot: usize,
    ) {
        let s = &mut self.slots[slot];
        match grid {
            Some(g) => g.encode_flag_copy(enc, &s.buffer, STATS_BYTES),
            None if s.grid_flag => {
                enc.clear_buffer(&s.buffer, STATS_BYTES, Some(SLOT_BYTES - STATS_BYTES))
            }
            None => {}
        }
        s.grid_flag = grid.is_some();
    }

    /// After the submission that holds the copy: maps `slot` for optimizer step `step`.
    pub fn submitted(&mut self, slot: usize, step: u64) {
        let s = &mut self.slots[slot];
        s.step = step;
        s.state.store(1, Ordering::SeqCst);
        let st = s.state.clone();
        s.buffer.map_async(wgpu::MapMode::Read, .., move |r| {
            st.store(if r.is_ok() { 2 } else { 3 }, Ordering::SeqCst);
        });
        self.in_flight.push_back(slot);
    }

    fn take(&mut self, slot: usize) -> Result<StepStats> {
        let s = &self.slots[slot];
        let state = s.state.load(Ordering::SeqCst);
        s.state.store(0, Ordering::SeqCst);
        if state != 2 {
            return Err(Error::Gpu(
                "reading the step statistics failed (device lost?)".into(),
            ));
        }
        let v: Vec<f32> = {
            let view = s
                .buffer
                .get_mapped_range(..)
                .map_err(|e| Error::Gpu(format!("reading the step statistics failed: {e:?}")))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        s.buffer.unmap();
        let (loss, norm) = (v[0], v[2]);
        if v[4].to_bits() != 0 {
            return Err(Error::Gpu(format!(
                "{GRID_GAVE_UP} at optimizer step {}: its workgroups were not all running at once, so the step was skipped (its gradients made NaN). HINT: the model now runs the per-step kernels; train on (or pin a tile without persist=P)",
                s.step
            )));
        }
        if !loss.is_finite() || !norm.is_finite() {
            return Err(Error::Diverged {
                step: s.step as usize,
                loss: if loss.is_finite() { norm } else { loss },
            });
        }
        Ok(StepStats {
            loss,
            grad_norm: norm,
        })
    }

    /// Waits for the oldest step in flight and queues its statistics.
    fn wait_oldest(&mut self, gpu: &GpuDevice) -> Result<()> {
        let slot = *self.in_flight.front().expect("a step in flight");
        while self.slots[slot].state.load(Ordering::SeqCst) == 1 {
            gpu.wait()?;
        }
        self.in_flight.pop_front();
        let s = self.take(slot)?;
        self.ready.push(s);
        Ok(())
    }

    /// Statistics of the steps that have finished, oldest first, without blocking.
    pub fn poll(&mut self, gpu: &GpuDevice) -> Result<Vec<StepStats>> {
        let _ = gpu.device.poll(wgpu::PollType::Poll);
        while let Some(&slot) = self.in_flight.front() {
            if self.slots[slot].state.load(Ordering::SeqCst) == 1 {
                break;
            }
            self.in_flight.pop_front();
            let s = self.take(slot)?;
            self.ready.push(s);
        }
        Ok(std::mem::take(&mut self.ready))
    }

    /// Waits for every submitted step; returns the statistics not collected yet.
    pub fn finish(&mut self, gpu: &GpuDevice) -> Result<Vec<StepStats>> {
        while !self.in_flight.is_empty() {
            self.wait_oldest(gpu)?;
        }
        Ok(std::mem::take(&mut self.ready))
    }
}
