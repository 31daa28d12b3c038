// SPDX-License-Identifier: GPL-2.0
//! Guest code for the `idle` and `bursty` loads (not implemented yet).

use crate::sys::SharedMem;

/// Writes the ticking guest's code and IDT into guest RAM.
pub fn build(_mem: &SharedMem, _hz: u32, _burst_us: u32) {
    unimplemented!("idle guest")
}
