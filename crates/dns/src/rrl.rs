//! Response rate limiting (RRL) for UDP answers, in the manner of BIND's and Knot's
//! RRL: a spoofed-source flood must not turn this server into a reflector.
//!
//! Responses are counted per client network (the source address cut to
//! [`RrlConfig::ipv4_prefix`] / [`RrlConfig::ipv6_prefix`] bits) in a token bucket:
//! [`RrlConfig::responses_per_second`] tokens a second, at most [`RrlConfig::burst`]
//! saved up. A response without a token is suppressed: every
//! [`RrlConfig::slip`]-th suppressed response is still sent, cut to a minimal
//! truncated answer (TC=1, no records, see [`slip`]) so that a genuine client behind
//! that network retries over TCP, which is not rate limited (its source is proven);
//! the others are dropped.
//!
//! The buckets live in one fixed table of atomics shared by every UDP worker, sized
//! once ([`RrlConfig::table_size`]) however many sources send: a network's bucket is
//! the slot its keyed hash picks, checked and updated with one compare-and-swap (no
//! lock, no allocation). Each slot packs a 16-bit tag of the hash (the network that
//! owns the bucket) and the bucket as GCRA keeps it: the theoretical arrival time of the
//! next response, in microseconds of the [`Clock`]. Another network whose hash picks
//! the same slot takes it over only when the bucket is idle (its arrival time not
//! ahead of now: fully refilled, so nothing is lost); until then it is charged to that
//! bucket. Networks that collide thus share a bucket, and a flood from spoofed random
//! sources, which touches every slot, cannot reset a limited network's bucket to a
//! fresh burst. The hash's key is random per server, so a sender cannot aim at another
//! network's slot.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Response rate limiting settings (`DnsConfig::rrl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrlConfig {
    /// UDP responses per second to one client network; 0 turns rate limiting off.
    pub responses_per_second: u32,
    /// Responses a client network may receive at once after a quiet spell (the bucket's
    /// size); at least 1.
    pub burst: u32,
    /// Every `slip`-th suppressed response is sent truncated (TC=1) instead of dropped,
    /// so genuine clients retry over TCP: 1 truncates all, 0 drops all.
    pub slip: u32,
    /// Prefix length of an IPv4 client network (0 to 32).
    pub ipv4_prefix: u8,
    /// Prefix length of an IPv6 client network (0 to 128).
    pub ipv6_prefix: u8,
    /// Buckets in the table (rounded up to a power of two, 1 to 2^24): 8 bytes each, the
    /// whole memory rate limiting takes.
    pub table_size: usize,
}

impl Default for RrlConfig {
    /// 200 responses a second per /24 or /56 (NSD's default rate), a one-second burst,
    /// slip 2 (BIND's and NSD's), 65,536 buckets (512 KiB).
    fn default() -> Self {
        RrlConfig {
            responses_per_second: 200,
            burst: 200,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            table_size: 1 << 16,
        }
    }
}

impl RrlConfig {
    /// Rate limiting turned off.
    pub fn off() -> Self {
        RrlConfig {
            responses_per_second: 0,
            ..RrlConfig::default()
        }
    }

    /// Whether responses are rate limited at all.
    pub fn enabled(&self) -> bool {
        self.responses_per_second > 0
    }

    /// Why these settings cannot be used, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.ipv4_prefix > 32 {
            return Err(format!(
                "RRL IPv4 prefix length {} is over 32: give 0 to 32 (24 is usual)",
                self.ipv4_prefix
            ));
        }
        if self.ipv6_prefix > 128 {
            return Err(format!(
                "RRL IPv6 prefix length {} is over 128: give 0 to 128 (56 is usual)",
                self.ipv6_prefix
            ));
        }
        if self.table_size == 0 || self.table_size > MAX_TABLE {
            return Err(format!(
                "RRL table size {} is out of range: give 1 to {MAX_TABLE} buckets",
                self.table_size
            ));
        }
        Ok(())
    }
}

/// The largest table: 2^24 buckets (128 MiB).
const MAX_TABLE: usize = 1 << 24;
/// The largest burst: with one response a second, 11.6 days of saved-up tokens (the
/// time arithmetic keeps well inside its 48 bits).
const MAX_BURST: u64 = 1_000_000;
/// The low 48 bits of a slot: the theoretical arrival time, in microseconds.
const TIME_BITS: u32 = 48;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;

/// What to do with one UDP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the client network's rate: send it.
    Send,
    /// Over the rate, and this one slips: send it minimal and truncated ([`slip`]).
    Slip,
    /// Over the rate: drop it.
    Drop,
}

/// The time rate limiting reads, in microseconds: the monotonic clock, or a manual one
/// that tests move by hand.
#[derive(Debug, Clone)]
pub enum Clock {
    Monotonic(Instant),
    Manual(ManualClock),
}

impl Clock {
    /// The monotonic clock, from now.
    pub fn monotonic() -> Self {
        Clock::Monotonic(Instant::now())
    }

    /// Microseconds since the clock's start (wrapping every 2^48 µs, 8.9 years, which
    /// the buckets tolerate).
    pub fn now(&self) -> u64 {
        match self {
            Clock::Monotonic(start) => {
                u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX) & TIME_MASK
            }
            Clock::Manual(m) => m.now() & TIME_MASK,
        }
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// Microseconds since the start.
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Moves the clock forward by `micros`.
    pub fn advance(&self, micros: u64) {
        self.0.fetch_add(micros, Ordering::Relaxed);
    }
}

/// The shared bucket table (see the module's documentation).
#[derive(Debug)]
pub struct Rrl {
    slots: Box<[AtomicU64]>,
    mask: u64,
    /// Microseconds per token (rounded up: never more than the configured rate).
    interval: u64,
    /// How far ahead of now the arrival time may be and still pass: `(burst - 1)`
    /// intervals.
    tolerance: u64,
    slip: u32,
    networks: Networks,
    key: [u64; 3],
    clock: Clock,
}

impl Rrl {
    /// The table for `config` on `clock`; `None` when rate limiting is off. Settings
    /// out of range are clamped (see [`RrlConfig::check`] to refuse them instead).
    pub fn new(config: &RrlConfig, clock: Clock) -> Option<Rrl> {
        if !config.enabled() {
            return None;
        }
        let size = config.table_size.clamp(1, MAX_TABLE).next_power_of_two();
        let interval = 1_000_000u64.div_ceil(u64::from(config.responses_per_second));
        let burst = u64::from(config.burst).clamp(1, MAX_BURST);
        let state = RandomState::new();
        let random = |n: u64| {
            let mut h = state.build_hasher();
            h.write_u64(n);
            h.finish() | 1
        };
        Some(Rrl {
            slots: (0..size).map(|_| AtomicU64::new(0)).collect(),
            mask: size as u64 - 1,
            interval,
            tolerance: (burst - 1) * interval,
            slip: config.slip,
            networks: Networks::new(config),
            key: [random(1), random(2), random(3)],
            clock,
        })
    }

    /// The clock's time, for [`verdict`](Self::verdict) (read once per batch of
    /// datagrams).
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Takes a token for a response to `client` at `now`; `false` when its network has
    /// none left.
    pub fn allow(&self, client: IpAddr, now: u64) -> bool {
        let hash = self.hash(client);
        let tag = hash & !TIME_MASK;
        let Some(slot) = self.slots.get((hash & self.mask) as usize) else {
            return true;
        };
        let mut current = slot.load(Ordering::Relaxed);
        // A few tries when another worker updates the same bucket at the same moment;
        // past them the response passes (the rate holds to within those few).
        for _ in 0..4 {
            // How far the slot's arrival time is ahead of now (wrapping in 48 bits). A
            // bucket is never ahead by more than tolerance + interval; more means it is
            // stale (behind now, or from a wrapped clock): it is full, as at 0. So is
            // a slot never used (0).
            let ahead = (current & TIME_MASK).wrapping_sub(now) & TIME_MASK;
            let ahead = if current == 0 || ahead > self.tolerance + self.interval {
                0
            } else {
                ahead
            };
            // Another network's bucket is taken over only once it is idle (full again,
            // arrival time not ahead of now), which starts it afresh with nothing
            // charged, exactly as the old owner's would be. Until then the response is
            // charged to that bucket, under its owner's tag: networks that collide share
            // it, and a flood of spoofed sources cannot hand a limited network a fresh
            // burst by resetting its slot.
            let owner = if ahead == 0 {
                tag
            } else {
                current & !TIME_MASK
            };
            if ahead > self.tolerance {
                return false;
            }
            let next = owner | (now.wrapping_add(ahead).wrapping_add(self.interval) & TIME_MASK);
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
        true
    }

    /// What to do with a response to `client` at `now`; `suppressed` is the caller's
    /// count of suppressed responses (one per worker), which decides which slip.
    pub fn verdict(&self, client: IpAddr, now: u64, suppressed: &mut u32) -> Verdict {
        if self.allow(client, now) {
            return Verdict::Send;
        }
        if self.slip == 0 {
            return Verdict::Drop;
        }
        *suppressed = suppressed.wrapping_add(1);
        if *suppressed >= self.slip {
            *suppressed = 0;
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// The keyed hash of `client`'s network: the slot in its low bits, the tag in its
    /// high 16.
    fn hash(&self, client: IpAddr) -> u64 {
        let (family, hi, lo) = match self.networks.network(client) {
            IpAddr::V4(a) => (1, 0, u64::from(u32::from(a))),
            IpAddr::V6(a) => {
                let net = u128::from(a);
                (2, (net >> 64) as u64, net as u64)
            }
        };
        let [k0, k1, k2] = self.key;
        let h = fold(lo ^ k0, hi ^ k1 ^ family);
        fold(h ^ k2, 0x9e37_79b9_7f4a_7c15)
    }
}

/// The client network an address belongs to: the address cut to
/// [`RrlConfig::ipv4_prefix`] or [`RrlConfig::ipv6_prefix`] bits (an IPv4-mapped IPv6
/// address counts as IPv4). Rate limiting counts per network, and so does the TCP
/// per-client connection cap (`crate::server`), so that the many addresses one client
/// holds (a whole IPv6 /64) count as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Networks {
    v4_mask: u32,
    v6_mask: u128,
}

impl Networks {
    /// The networks of `config`'s prefix lengths (clamped to 32 and 128).
    pub fn new(config: &RrlConfig) -> Self {
        let v4 = u32::from(config.ipv4_prefix.min(32));
        let v6 = u32::from(config.ipv6_prefix.min(128));
        Networks {
            v4_mask: u32::MAX.checked_shl(32 - v4).unwrap_or(0),
            v6_mask: u128::MAX.checked_shl(128 - v6).unwrap_or(0),
        }
    }

    /// The network of `client`: its address with the host bits cleared.
    pub fn network(&self, client: IpAddr) -> IpAddr {
        match client.to_canonical() {
            IpAddr::V4(a) => IpAddr::from((u32::from(a) & self.v4_mask).to_be_bytes()),
            IpAddr::V6(a) => IpAddr::from((u128::from(a) & self.v6_mask).to_be_bytes()),
        }
    }
}

/// The folded multiply of foldhash and aHash: the 128-bit product's halves xored.
fn fold(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Cuts a response in place to the minimal truncated answer a slipped response is:
/// its header with TC set and no records, and its question; `false` (and `response`
/// untouched) when it is not a response this server could have written.
pub fn slip(response: &mut Vec<u8>) -> bool {
    const HEADER: usize = 12;
    let Some(header) = response.get(..HEADER) else {
        return false;
    };
    let questions = u16::from_be_bytes([header[4], header[5]]);
    let end = match questions {
        0 => HEADER,
        1 => match question_end(response) {
            Some(end) => end,
            None => return false,
        },
        // Not a response of ours; keep the header only.
        _ => HEADER,
    };
    response.truncate(end);
    if let Some(header) = response.get_mut(..HEADER) {
        header[2] |= 0x02;
        header[4..6].copy_from_slice(&u16::from(end > HEADER).to_be_bytes());
        header[6..12].fill(0);
    }
    true
}

/// The offset just past the first question: its name (labels, or ending in a
/// pointer), then type and class.
fn question_end(message: &[u8]) -> Option<usize> {
    let mut at = 12;
    loop {
        let len = *message.get(at)?;
        match len {
            0 => {
                at += 1;
                break;
            }
            l if l & 0xc0 == 0xc0 => {
                at += 2;
                break;
            }
            l if l > 63 => return None,
            l => at += 1 + usize::from(l),
        }
    }
    (at + 4 <= message.len()).then_some(at + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(config: RrlConfig) -> (Rrl, ManualClock) {
        let clock = ManualClock::default();
        let rrl = Rrl::new(&config, Clock::Manual(clock.clone())).expect("enabled");
        (rrl, clock)
    }

    fn config(rate: u32, burst: u32, slip: u32) -> RrlConfig {
        RrlConfig {
            responses_per_second: rate,
            burst,
            slip,
            ..RrlConfig::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn off_is_none() {
        assert!(Rrl::new(&RrlConfig::off(), Clock::monotonic()).is_none());
        assert!(RrlConfig::default().enabled());
        assert!(RrlConfig::default().check().is_ok());
    }

    #[test]
    fn a_burst_then_the_rate() {
        let (rrl, clock) = limiter(config(10, 5, 2));
        let client = ip("192.0.2.1");
        let passed = (0..100).filter(|_| rrl.allow(client, clock.now())).count();
        assert_eq!(passed, 5, "the burst, at one instant");
        // One token per 100 ms.
        clock.advance(99_999);
        assert!(!rrl.allow(client, clock.now()));
        clock.advance(1);
        assert!(rrl.allow(client, clock.now()));
        assert!(!rrl.allow(client, clock.now()));
        // Ten seconds at ten queries per 100 ms: 100 passed, the rate exactly.
        let mut passed = 0;
        for _ in 0..100 {
            clock.advance(100_000);
            passed += (0..10).filter(|_| rrl.allow(client, clock.now())).count();
        }
        assert_eq!(passed, 100);
        // A quiet spell refills the bucket, never past the burst.
        clock.advance(60_000_000);
        let passed = (0..100).filter(|_| rrl.allow(client, clock.now())).count();
        assert_eq!(passed, 5);
    }

    #[test]
    fn networks_are_counted_apart_and_hosts_of_one_together() {
        let (rrl, clock) = limiter(config(1, 2, 0));
        let now = clock.now();
        assert!(rrl.allow(ip("198.51.100.1"), now));
        assert!(rrl.allow(ip("198.51.100.200"), now), "same /24");
        assert!(
            !rrl.allow(ip("198.51.100.7"), now),
            "the /24's burst is spent"
        );
        assert!(
            !rrl.allow(ip("::ffff:198.51.100.9"), now),
            "v4-mapped: same"
        );
        assert!(rrl.allow(ip("198.51.101.1"), now), "another /24");
        assert!(rrl.allow(ip("2001:db8:0:1::1"), now));
        assert!(rrl.allow(ip("2001:db8:0:ff::2"), now), "same /56");
        assert!(!rrl.allow(ip("2001:db8:0:1::3"), now));
        assert!(rrl.allow(ip("2001:db8:0:100::1"), now), "another /56");
    }

    #[test]
    fn configured_prefixes() {
        let (rrl, clock) = limiter(RrlConfig {
            ipv4_prefix: 32,
            ipv6_prefix: 128,
            ..config(1, 1, 0)
        });
        let now = clock.now();
        assert!(rrl.allow(ip("198.51.100.1"), now));
        assert!(!rrl.allow(ip("198.51.100.1"), now));
        assert!(rrl.allow(ip("198.51.100.2"), now));
        assert!(rrl.allow(ip("2001:db8::1"), now));
        assert!(rrl.allow(ip("2001:db8::2"), now));
        let (rrl, clock) = limiter(RrlConfig {
            ipv4_prefix: 0,
            ..config(1, 1, 0)
        });
        assert!(rrl.allow(ip("198.51.100.1"), clock.now()));
        assert!(
            !rrl.allow(ip("203.0.113.1"), clock.now()),
            "one network: all"
        );
    }

    #[test]
    fn slip_every_second_suppressed_response() {
        let (rrl, clock) = limiter(config(1, 1, 2));
        let client = ip("192.0.2.1");
        let mut suppressed = 0;
        let verdicts: Vec<Verdict> = (0..7)
            .map(|_| rrl.verdict(client, clock.now(), &mut suppressed))
            .collect();
        use Verdict::*;
        assert_eq!(verdicts, [Send, Drop, Slip, Drop, Slip, Drop, Slip]);
        let (rrl, clock) = limiter(config(1, 1, 1));
        let mut suppressed = 0;
        rrl.verdict(client, clock.now(), &mut suppressed);
        assert_eq!(rrl.verdict(client, clock.now(), &mut suppressed), Slip);
        assert_eq!(rrl.verdict(client, clock.now(), &mut suppressed), Slip);
        let (rrl, clock) = limiter(config(1, 1, 0));
        rrl.verdict(client, clock.now(), &mut suppressed);
        assert_eq!(rrl.verdict(client, clock.now(), &mut suppressed), Drop);
    }

    #[test]
    fn a_full_table_keeps_its_size_and_still_limits() {
        let (rrl, clock) = limiter(RrlConfig {
            table_size: 1000,
            ..config(1, 1, 0)
        });
        assert_eq!(rrl.slots.len(), 1024);
        // A million sources at one instant: at most one passes per slot (a colliding
        // network shares the bucket it finds spent).
        let passed = (0..1_000_000u32)
            .filter(|i| rrl.allow(IpAddr::from((i << 8).to_be_bytes()), clock.now()))
            .count();
        assert!(passed <= 1024, "{passed} passed");
        assert_eq!(rrl.slots.len(), 1024);
        // Once the buckets have refilled, a network has its own burst again.
        clock.advance(1_000_000);
        let client = ip("192.0.2.1");
        assert!(rrl.allow(client, clock.now()));
        assert!(!rrl.allow(client, clock.now()));
    }

    #[test]
    fn a_flood_of_spoofed_networks_cannot_reset_a_limited_network() {
        let (rrl, clock) = limiter(RrlConfig {
            table_size: 1024,
            ..config(10, 5, 0)
        });
        let victim = ip("192.0.2.1");
        let passed = (0..100).filter(|_| rrl.allow(victim, clock.now())).count();
        assert_eq!(passed, 5);
        // Every slot is hit many times by other networks within the victim's 100 ms.
        for round in 0..10u32 {
            for i in 0..100_000u32 {
                rrl.allow(
                    IpAddr::from((round << 28 | i << 8).to_be_bytes()),
                    clock.now(),
                );
            }
            assert!(
                !rrl.allow(victim, clock.now()),
                "round {round}: still limited"
            );
            clock.advance(9_000);
        }
        // Only the rate comes back: one token per 100 ms, shared with whoever
        // collides with the victim.
        clock.advance(10_000);
        let passed = (0..100).filter(|_| rrl.allow(victim, clock.now())).count();
        assert!(passed <= 1, "{passed} passed");
    }

    #[test]
    fn a_colliding_network_takes_over_a_slot_only_once_it_is_idle() {
        // One slot: every network collides.
        let (rrl, clock) = limiter(RrlConfig {
            table_size: 1,
            ..config(10, 3, 0)
        });
        assert_eq!(rrl.slots.len(), 1);
        let tag = |client| rrl.hash(client) & !TIME_MASK;
        let owner = || rrl.slots[0].load(Ordering::Relaxed) & !TIME_MASK;
        let a = ip("192.0.2.1");
        // A network whose tag differs from A's (all but one in 65,536 do).
        let b = (0..=255u8)
            .map(|n| IpAddr::from([198, 51, n, 1]))
            .find(|&b| tag(b) != tag(a))
            .expect("a network with another tag");

        let passed = (0..10).filter(|_| rrl.allow(a, clock.now())).count();
        assert_eq!(passed, 3, "A's burst");
        assert_eq!(owner(), tag(a));
        // B cannot reset A's spent bucket: it is charged to it, and A stays limited.
        for _ in 0..10 {
            assert!(!rrl.allow(b, clock.now()), "B shares A's spent bucket");
            assert!(!rrl.allow(a, clock.now()), "A still limited");
        }
        assert_eq!(owner(), tag(a));
        // One token back: whoever asks first takes it, still in A's bucket.
        clock.advance(100_000);
        assert!(rrl.allow(b, clock.now()));
        assert!(!rrl.allow(a, clock.now()));
        assert_eq!(owner(), tag(a));
        // Once A's bucket has fully refilled (idle), B takes the slot over, afresh.
        clock.advance(300_000);
        let passed = (0..10).filter(|_| rrl.allow(b, clock.now())).count();
        assert_eq!(passed, 3, "B's own burst");
        assert_eq!(owner(), tag(b));
        assert!(!rrl.allow(a, clock.now()), "now A shares B's spent bucket");
    }

    #[test]
    fn networks_cut_addresses_to_the_prefixes() {
        let networks = Networks::new(&RrlConfig::default());
        assert_eq!(networks.network(ip("198.51.100.77")), ip("198.51.100.0"));
        assert_eq!(
            networks.network(ip("::ffff:198.51.100.77")),
            ip("198.51.100.0")
        );
        assert_eq!(
            networks.network(ip("2001:db8:1:2ff:1:2:3:4")),
            ip("2001:db8:1:200::")
        );
        let all = Networks::new(&RrlConfig {
            ipv4_prefix: 32,
            ipv6_prefix: 0,
            ..RrlConfig::default()
        });
        assert_eq!(all.network(ip("198.51.100.77")), ip("198.51.100.77"));
        assert_eq!(all.network(ip("2001:db8::1")), ip("::"));
    }

    #[test]
    fn the_clock_may_wrap() {
        let (rrl, clock) = limiter(config(10, 1, 0));
        let client = ip("192.0.2.1");
        clock.advance(TIME_MASK - 50_000);
        assert!(rrl.allow(client, clock.now()));
        assert!(!rrl.allow(client, clock.now()));
        // 100 ms later the clock has wrapped past zero; one token is back.
        clock.advance(100_000);
        assert!(clock.now() & TIME_MASK < 100_000);
        assert!(rrl.allow(client, clock.now()));
        assert!(!rrl.allow(client, clock.now()));
        // A bucket left for years (a whole clock wrap) does not block.
        clock.advance(TIME_MASK / 2 + 12_345);
        assert!(rrl.allow(client, clock.now()));
    }

    #[test]
    fn settings_out_of_range_are_refused_with_a_reason() {
        for bad in [
            RrlConfig {
                ipv4_prefix: 33,
                ..RrlConfig::default()
            },
            RrlConfig {
                ipv6_prefix: 129,
                ..RrlConfig::default()
            },
            RrlConfig {
                table_size: 0,
                ..RrlConfig::default()
            },
        ] {
            let e = bad.check().expect_err("out of range");
            assert!(e.contains("give"), "{e}");
        }
    }

    #[test]
    fn slipped_responses_keep_the_header_and_question_only() {
        // id, flags (QR AA), QD 1, AN 1, NS 0, AR 1; question; an answer; an OPT.
        let mut r = vec![0xab, 0xcd, 0x84, 0x00, 0, 1, 0, 1, 0, 0, 0, 1];
        let question = [4, b'd', b'e', b'm', b'o', 0, 0, 1, 0, 1];
        r.extend(question);
        r.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 1]);
        r.extend([0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        assert!(slip(&mut r));
        let mut want = vec![0xab, 0xcd, 0x86, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        want.extend(question);
        assert_eq!(r, want);
        // A header-only response (FORMERR) stays a header.
        let mut r = vec![0, 1, 0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(slip(&mut r));
        assert_eq!(r[2], 0x82);
        // Garbage is refused.
        for mut bad in [
            vec![0u8; 5],
            vec![0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, b'x'],
            vec![0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        ] {
            let before = bad.clone();
            assert!(!slip(&mut bad));
            assert_eq!(bad, before);
        }
    }
}
