//! The live instances of one block on one thread, by slot: what lets a block's fast-path
//! functions be made once per thread and shared by all its instances (the tracer's
//! `FastPath`).
//!
//! Why share them: functions made per instance are different functions to V8, so a call site
//! in `lib/` that serves two instances sees two targets, and V8 stops inlining and calling
//! them directly. With one set of functions per thread, JS writes the instance's slot into the
//! shared `io` array before each call, and the native side finds the instance here.
//!
//! Measure before using it elsewhere: the cache was tried with shared functions (2026-11-28;
//! both builds in one process, timed loops alternating) and a get of a 100-byte string cost
//! 5-15% more with one cache in use and 2-8% less with five, so the cache kept its functions
//! per instance.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

/// A thread's instances of one block, by slot. Weak: the JS object owns its instance, and a
/// dropped instance leaves an empty slot for the next one made.
pub struct SlotRegistry<T> {
    slots: RefCell<Vec<Weak<T>>>,
    /// The slot and instance the last lookup found (NaN and null for none).
    last: Cell<(f64, *const T)>,
}

impl<T> Default for SlotRegistry<T> {
    fn default() -> Self {
        SlotRegistry {
            slots: RefCell::new(Vec::new()),
            last: Cell::new((f64::NAN, std::ptr::null())),
        }
    }
}

impl<T> SlotRegistry<T> {
    /// The instance in `slot` (a number read from the `io` array), if it is still alive. The
    /// last one found is remembered: a call for the same instance as the one before (nearly all
    /// of them) costs one comparison instead of a walk from the slot to the instance.
    #[inline]
    pub fn get(&self, slot: f64) -> Option<&T> {
        let (last_slot, last) = self.last.get();
        if slot == last_slot {
            // SAFETY: `last` is alive: an instance's drop forgets it first (see `forget`).
            return Some(unsafe { &*last });
        }
        self.find(slot)
    }

    #[cold]
    fn find(&self, slot: f64) -> Option<&T> {
        if !(0.0..=f64::from(u32::MAX)).contains(&slot) || slot.fract() != 0.0 {
            return None;
        }
        let slots = self.slots.borrow();
        let instance = slots.get(slot as usize)?;
        if instance.strong_count() == 0 {
            return None;
        }
        let found = instance.as_ptr();
        self.last.set((slot, found));
        // SAFETY: alive (strong count above zero). An instance is dropped only by V8's
        // finalizer of its JS object, which cannot run during a call made on that object,
        // and its drop forgets it here first.
        Some(unsafe { &*found })
    }

    /// Forgets the instance in `slot` as the last one found: it is being dropped. Call it from
    /// the owner's `Drop`, before the instance goes.
    pub fn forget(&self, slot: u32) {
        if self.last.get().0 == f64::from(slot) {
            self.last.set((f64::NAN, std::ptr::null()));
        }
    }

    /// Gives `instance` a slot (an empty one if there is one) and returns it.
    pub fn register(&self, instance: &Rc<T>) -> u32 {
        let mut slots = self.slots.borrow_mut();
        let slot = match slots.iter().position(|s| s.strong_count() == 0) {
            Some(slot) => {
                slots[slot] = Rc::downgrade(instance);
                slot
            }
            None => {
                slots.push(Rc::downgrade(instance));
                slots.len() - 1
            }
        };
        slot as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_live_instances_and_reuses_the_slots_of_dropped_ones() {
        let registry = SlotRegistry::default();
        let a = Rc::new("a");
        let b = Rc::new("b");
        let slot_a = registry.register(&a);
        let slot_b = registry.register(&b);
        assert_ne!(slot_a, slot_b);
        assert_eq!(registry.get(f64::from(slot_a)), Some(&"a"));
        assert_eq!(registry.get(f64::from(slot_b)), Some(&"b"));
        // the remembered one, then the other again
        assert_eq!(registry.get(f64::from(slot_b)), Some(&"b"));
        assert_eq!(registry.get(f64::from(slot_a)), Some(&"a"));

        registry.forget(slot_a);
        drop(a);
        assert_eq!(registry.get(f64::from(slot_a)), None);
        let c = Rc::new("c");
        assert_eq!(registry.register(&c), slot_a, "the empty slot is reused");
        assert_eq!(registry.get(f64::from(slot_a)), Some(&"c"));
    }

    #[test]
    fn a_slot_that_is_not_a_registered_index_finds_nothing() {
        let registry = SlotRegistry::default();
        let a = Rc::new(1);
        registry.register(&a);
        for slot in [-1.0, 1.0, 0.5, f64::NAN, f64::INFINITY, 1e12] {
            assert_eq!(registry.get(slot), None, "slot {slot}");
        }
    }
}
