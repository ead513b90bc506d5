//! The wait queue of `acquire`: weighted fair order across clients.
//!
//! Each client (key) has its own FIFO of waiters. Across clients, waiters are ordered by
//! self-clocked fair queuing: a waiter's tag is `max(V, client's last tag) + cost / weight`,
//! where `V` is the tag of the waiter granted last. A client that queues a thousand requests
//! gets tags far in the future, while a client that arrives later starts at `V`: its first
//! waiter is served after at most one waiter of every other client, never after the whole
//! backlog. Weights scale the share: a client of weight 2 gets twice the tokens of one of
//! weight 1 while both wait.
//!
//! The queue only orders and keeps waiters; whether the head of a client may be served (its own
//! bucket and the shared budget hold the tokens) is decided by the limiter.

use std::collections::{BTreeSet, HashMap, VecDeque};

use compact_str::CompactString;

/// A queued `acquire` call.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiter {
    /// Identifies the waiter to the JS side.
    pub id: u64,
    /// The client key it waits for.
    pub key: CompactString,
    /// Tokens it asks for.
    pub cost: f64,
    /// Clock time (ns) at which it gives up.
    pub deadline: u64,
    /// Clock time (ns) at which it was queued.
    pub queued_at: u64,
    tag: f64,
}

struct ClientQueue {
    ids: VecDeque<u64>,
    last_tag: f64,
}

/// Waiters ordered fairly across clients, FIFO within one client.
#[derive(Default)]
pub struct FairQueue {
    waiters: HashMap<u64, Waiter>,
    clients: HashMap<CompactString, ClientQueue>,
    /// The first waiter of every client, by (tag, id): the next to serve is the first here.
    heads: BTreeSet<(u64, u64)>,
    /// Every waiter by (deadline, id), to expire them in order.
    deadlines: BTreeSet<(u64, u64)>,
    virtual_time: f64,
    next_id: u64,
}

/// Orders non-negative floats by their bits, which for such floats is their numeric order.
#[inline]
fn tag_bits(tag: f64) -> u64 {
    tag.max(0.0).to_bits()
}

impl FairQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waiters queued in all.
    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Waiters queued for `key`.
    pub fn client_len(&self, key: &str) -> usize {
        self.clients.get(key).map_or(0, |c| c.ids.len())
    }

    /// Queues a waiter and returns its id.
    pub fn push(&mut self, key: &str, cost: f64, weight: f64, deadline: u64, now: u64) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let client = self
            .clients
            .entry(CompactString::from(key))
            .or_insert_with(|| ClientQueue {
                ids: VecDeque::new(),
                last_tag: 0.0,
            });
        let tag = self.virtual_time.max(client.last_tag) + cost / weight;
        client.last_tag = tag;
        client.ids.push_back(id);
        if client.ids.len() == 1 {
            self.heads.insert((tag_bits(tag), id));
        }
        self.deadlines.insert((deadline, id));
        self.waiters.insert(
            id,
            Waiter {
                id,
                key: CompactString::from(key),
                cost,
                deadline,
                queued_at: now,
                tag,
            },
        );
        id
    }

    /// The first waiter of each client, in the order they should be served.
    pub fn heads(&self) -> impl Iterator<Item = &Waiter> + '_ {
        self.heads.iter().map(|(_, id)| &self.waiters[id])
    }

    /// Takes a waiter out of the queue, wherever it is; `None` when it is not queued.
    pub fn remove(&mut self, id: u64) -> Option<Waiter> {
        let waiter = self.waiters.remove(&id)?;
        self.deadlines.remove(&(waiter.deadline, id));
        let client = self.clients.get_mut(waiter.key.as_str())?;
        let was_head = client.ids.front() == Some(&id);
        client.ids.retain(|&queued| queued != id);
        if was_head {
            self.heads.remove(&(tag_bits(waiter.tag), id));
            if let Some(&next) = client.ids.front() {
                self.heads.insert((tag_bits(self.waiters[&next].tag), next));
            }
        }
        if client.ids.is_empty() {
            self.clients.remove(waiter.key.as_str());
        }
        Some(waiter)
    }

    /// Takes a served waiter out and moves virtual time to its tag.
    pub fn grant(&mut self, id: u64) -> Option<Waiter> {
        let waiter = self.remove(id)?;
        self.virtual_time = self.virtual_time.max(waiter.tag);
        Some(waiter)
    }

    /// The earliest deadline of any waiter.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|&(deadline, _)| deadline)
    }

    /// Takes out every waiter whose deadline is at or before `now`, earliest first.
    pub fn take_expired(&mut self, now: u64) -> Vec<Waiter> {
        let mut expired = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            expired.extend(self.remove(id));
        }
        expired
    }

    /// Takes out every waiter.
    pub fn drain(&mut self) -> Vec<Waiter> {
        let ids: Vec<u64> = self.deadlines.iter().map(|&(_, id)| id).collect();
        ids.into_iter().filter_map(|id| self.remove(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_all(queue: &mut FairQueue) -> Vec<String> {
        let mut order = Vec::new();
        loop {
            let next = queue.heads().next().map(|w| w.id);
            let Some(id) = next else { break };
            order.push(queue.grant(id).unwrap().key.to_string());
        }
        order
    }

    #[test]
    fn a_late_client_is_not_stuck_behind_a_backlog() {
        let mut queue = FairQueue::new();
        for _ in 0..1000 {
            queue.push("heavy", 1.0, 1.0, u64::MAX, 0);
        }
        // serve a few of the heavy client's first
        for _ in 0..3 {
            let id = queue.heads().next().unwrap().id;
            queue.grant(id);
        }
        queue.push("light", 1.0, 1.0, u64::MAX, 0);
        let order = serve_all(&mut queue);
        let position = order.iter().position(|k| k == "light").unwrap();
        assert!(position <= 1, "light served at position {position}");
    }

    #[test]
    fn weights_share_in_proportion() {
        let mut queue = FairQueue::new();
        for _ in 0..300 {
            queue.push("gold", 1.0, 2.0, u64::MAX, 0);
            queue.push("bronze", 1.0, 1.0, u64::MAX, 0);
        }
        let order = serve_all(&mut queue);
        let gold_in_first_90 = order[..90].iter().filter(|k| *k == "gold").count();
        assert_eq!(gold_in_first_90, 60);
    }

    #[test]
    fn within_a_client_order_is_fifo() {
        let mut queue = FairQueue::new();
        let ids: Vec<u64> = (0..5)
            .map(|_| queue.push("a", 1.0, 1.0, u64::MAX, 0))
            .collect();
        let mut served = Vec::new();
        loop {
            let next = queue.heads().next().map(|w| w.id);
            let Some(id) = next else { break };
            served.push(queue.grant(id).unwrap().id);
        }
        assert_eq!(served, ids);
    }

    #[test]
    fn removal_from_the_middle_and_the_head_keeps_order() {
        let mut queue = FairQueue::new();
        let a1 = queue.push("a", 1.0, 1.0, 100, 0);
        let a2 = queue.push("a", 1.0, 1.0, 200, 0);
        let a3 = queue.push("a", 1.0, 1.0, 300, 0);
        assert_eq!(queue.remove(a2).unwrap().id, a2);
        assert_eq!(queue.remove(a1).unwrap().id, a1);
        assert_eq!(queue.heads().next().unwrap().id, a3);
        assert_eq!(queue.client_len("a"), 1);
        assert!(queue.remove(a2).is_none());
    }

    #[test]
    fn expiry_takes_waiters_in_deadline_order() {
        let mut queue = FairQueue::new();
        let late = queue.push("a", 1.0, 1.0, 500, 0);
        let early = queue.push("b", 1.0, 1.0, 100, 0);
        assert_eq!(queue.next_deadline(), Some(100));
        let expired: Vec<u64> = queue.take_expired(100).iter().map(|w| w.id).collect();
        assert_eq!(expired, vec![early]);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.drain()[0].id, late);
        assert!(queue.is_empty());
    }
}
