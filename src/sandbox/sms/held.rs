//! The SMS a fault holds back, indexed by due time and by number, so releasing one costs
//! O(log n) however many are held (up to [`MAX_HELD`](super::MAX_HELD)).
//!
//! Every held SMS gets an order number when it is held; both ways out hand SMS back in that
//! order, so two SMS released together reach the outbox in the order the bank sent them.

use crate::api::{Language, PhoneNumber, Timestamp};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// An SMS waiting to be delivered.
pub(super) struct Held {
    /// Delivered when the clock reaches this.
    pub(super) due: Timestamp,
    /// Delivered right after the next delivery to its number, if that comes before `due`.
    pub(super) after_next: bool,
    pub(super) number: PhoneNumber,
    pub(super) text: String,
    pub(super) language: Language,
    pub(super) sent_at: Timestamp,
    pub(super) message_id: u64,
}

/// The held SMS with their two indexes.
#[derive(Default)]
pub(super) struct HeldQueue {
    /// Every held SMS by its order number.
    by_order: BTreeMap<u64, Held>,
    /// `(due, order)` of every held SMS: the front is the next to fall due.
    by_due: BTreeSet<(Timestamp, u64)>,
    /// Order numbers of the SMS waiting for the next delivery to their number.
    followers: HashMap<PhoneNumber, BTreeSet<u64>>,
    next_order: u64,
}

impl HeldQueue {
    /// How many SMS are held.
    pub(super) fn len(&self) -> usize {
        self.by_order.len()
    }

    /// Holds `held` until its time (or, if it is a follower, the next delivery to its number).
    pub(super) fn push(&mut self, held: Held) {
        let order = self.next_order;
        self.next_order += 1;
        self.by_due.insert((held.due, order));
        if held.after_next {
            self.followers
                .entry(held.number.clone())
                .or_default()
                .insert(order);
        }
        self.by_order.insert(order, held);
    }

    /// Takes every SMS due by `now`, in the order they were held.
    pub(super) fn take_due(&mut self, now: Timestamp) -> Vec<Held> {
        let mut orders = Vec::new();
        while let Some(&(due, order)) = self.by_due.first()
            && due <= now
        {
            self.by_due.pop_first();
            orders.push(order);
        }
        // Due times differ, the order of sending wins.
        orders.sort_unstable();
        orders
            .into_iter()
            .filter_map(|order| self.remove(order))
            .collect()
    }

    /// Takes the SMS waiting for the next delivery to `number`, in the order they were held.
    pub(super) fn take_followers(&mut self, number: &PhoneNumber) -> Vec<Held> {
        let Some(orders) = self.followers.remove(number) else {
            return Vec::new();
        };
        orders
            .into_iter()
            .filter_map(|order| self.remove(order))
            .collect()
    }

    /// Removes the SMS held as `order` from every index.
    fn remove(&mut self, order: u64) -> Option<Held> {
        let held = self.by_order.remove(&order)?;
        self.by_due.remove(&(held.due, order));
        if held.after_next
            && let Some(waiting) = self.followers.get_mut(&held.number)
        {
            waiting.remove(&order);
            if waiting.is_empty() {
                self.followers.remove(&held.number);
            }
        }
        Some(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(n: u32) -> PhoneNumber {
        PhoneNumber::parse(&format!("+49151{n:08}")).unwrap()
    }

    /// Holds an SMS named `text` to `to`, due `secs` after `t0`.
    fn hold(q: &mut HeldQueue, t0: Timestamp, to: u32, text: &str, secs: i64, after_next: bool) {
        q.push(Held {
            due: t0.plus_seconds(secs),
            after_next,
            number: number(to),
            text: text.to_owned(),
            language: Language::En,
            sent_at: t0,
            message_id: 0,
        });
    }

    fn texts(held: Vec<Held>) -> Vec<String> {
        held.into_iter().map(|h| h.text).collect()
    }

    #[test]
    fn sms_due_together_come_out_in_the_order_they_were_held_not_by_due_time() {
        let mut q = HeldQueue::default();
        let t0 = crate::api::now_utc();
        hold(&mut q, t0, 1, "a due at 5", 5, false);
        hold(&mut q, t0, 2, "b due at 1", 1, false);
        hold(&mut q, t0, 1, "c due at 3", 3, true);
        hold(&mut q, t0, 1, "d due at 9", 9, false);
        assert!(q.take_due(t0).is_empty());
        assert_eq!(
            texts(q.take_due(t0.plus_seconds(5))),
            ["a due at 5", "b due at 1", "c due at 3"]
        );
        assert_eq!(q.len(), 1);
        // "c" went by its time: it no longer follows the next SMS to its number.
        assert!(q.take_followers(&number(1)).is_empty());
        assert_eq!(texts(q.take_due(t0.plus_seconds(100))), ["d due at 9"]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn followers_of_one_number_leave_together_in_order_and_not_again_by_time() {
        let mut q = HeldQueue::default();
        let t0 = crate::api::now_utc();
        hold(&mut q, t0, 1, "first", 30, true);
        hold(&mut q, t0, 2, "other number", 30, true);
        hold(&mut q, t0, 1, "late, not a follower", 1, false);
        hold(&mut q, t0, 1, "second", 20, true);
        assert_eq!(texts(q.take_followers(&number(1))), ["first", "second"]);
        assert!(q.take_followers(&number(1)).is_empty());
        assert_eq!(
            texts(q.take_due(t0.plus_seconds(30))),
            ["other number", "late, not a follower"],
            "the followers that left are gone from the time index too"
        );
        assert!(q.take_followers(&number(2)).is_empty());
        assert_eq!(q.len(), 0);
    }
}
