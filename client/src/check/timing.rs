//! What a hostile signature costs the server (docs/protocol.md §6): the
//! time of requests with a signature built to make matching expensive,
//! against requests with an honest signature that matches nothing (the
//! yardstick of §4.3 and BENCHMARKS.md, "Hostile signatures").

use super::{noise, Ctx, Level, Requirement};
use hsync_core::http::signature_for;
use hsync_core::limits;
use hsync_core::signature::{SigLimits, SigParams, Signature, MAX_SIGNATURE_LEN};
use std::time::Duration;

/// Requests of each kind by default.
pub const DEFAULT_REQUESTS: usize = 15;
/// The ratio of medians above which the check fails by default: generous,
/// as the checker's machine and the network are noisy (the modules measure
/// at most 1.35, BENCHMARKS.md §7.3).
pub const DEFAULT_BOUND: f64 = 3.0;
/// A difference of medians below this never fails: on a small page the
/// encoder's work is lost in the request's own cost.
pub const NOISE_FLOOR: Duration = Duration::from_millis(2);

pub const HOSTILE: Requirement = Requirement {
    id: "timing.hostile",
    section: "6",
    level: Level::Should,
    text: "a hostile signature costs the server at most a small constant times an honest one that matches nothing",
};

pub const REQUIREMENTS: &[&Requirement] = &[&HOSTILE];

/// The narrowest checks a server accepts (12 + 4 bits, 64-byte blocks)
/// and as many blocks as fit 4608 bytes, their weak sums spread over all
/// 4096 values: more than half of the positions of any page hit the
/// signature's filter and cost a strong check (`dense_filter` of
/// core/tests/hostile).
pub fn dense_filter() -> Signature {
    let block_len = 64u32;
    let (weak_bits, strong_bits) = (limits::SERVER_MIN_WEAK_BITS, limits::SERVER_MIN_STRONG_BITS);
    let probe = SigParams { block_len, weak_bits: 1, strong_bits: 1, sub_log: 0, sub_bits: 0 };
    let header = probe.signature_len(0) as usize + 5; // a 5-byte instance length
    let n = (MAX_SIGNATURE_LEN - header) * 8 / (weak_bits as usize + strong_bits as usize);
    let weak = (0..n as u32).map(|i| (i.wrapping_mul(2654435761)) >> 20).collect();
    let strong = (0..n as u32).map(|i| i % 16).collect();
    let params = SigParams { block_len, weak_bits, strong_bits, sub_log: 0, sub_bits: 0 };
    Signature { params, seed: 5, instance_len: n as u64 * block_len as u64, weak, strong, sub: vec![] }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub async fn check(cx: &mut Ctx<'_>) {
    let n = cx.opts.timing_requests;
    if n == 0 {
        return cx.skip(&HOSTILE, "turned off (--timing 0)");
    }
    let hostile = dense_filter();
    debug_assert!(Signature::parse(&hostile.to_bytes(), &SigLimits::server()).is_ok());
    let Some(honest) = signature_for(&noise(0xD1FF, cx.page.body.len())) else {
        return cx.na(&HOSTILE, "no honest signature for a copy of the page's length");
    };
    let (h_honest, h_hostile) = (super::hsync::header(&honest), super::hsync::header(&hostile));
    let ask = |sig: &str| [("accept-encoding", "hsync"), ("hsync-signature", sig)].map(|(k, v)| (k, v.to_string()));
    let (a, b) = (ask(&h_honest), ask(&h_hostile));
    let a: Vec<(&str, &str)> = a.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let b: Vec<(&str, &str)> = b.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // One of each first: warms the connection, and tells whether the hostile one is used.
    let first = match (cx.probe.get(&a).await, cx.probe.get(&b).await) {
        (Ok(_), Ok(x)) => x,
        (Err(e), _) => return cx.fail(&HOSTILE, format!("honest request: {e}")),
        (_, Err(e)) => return cx.fail(&HOSTILE, format!("hostile request: {e}")),
    };
    if !first.is_coded("hsync") {
        return cx.pass(
            &HOSTILE,
            format!(
                "the hostile signature ({} blocks of 64 bytes, 12+4 bits) is refused: the ordinary response ({})",
                hostile.block_count(),
                first.brief()
            ),
        );
    }
    let (mut th, mut tx) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        match cx.probe.get(&a).await {
            Ok(r) => th.push(r.elapsed),
            Err(e) => return cx.fail(&HOSTILE, format!("honest request: {e}")),
        }
        match cx.probe.get(&b).await {
            Ok(r) => tx.push(r.elapsed),
            Err(e) => return cx.fail(&HOSTILE, format!("hostile request: {e}")),
        }
    }
    let (mh, mx) = (median(th), median(tx));
    let ratio = mx.as_secs_f64() / mh.as_secs_f64().max(1e-6);
    let detail = format!(
        "{n} requests each, medians: honest (matches nothing) {}, hostile (dense filter, {} blocks) {}: ratio {ratio:.2} (fails above {:.2} and {} more)",
        ms(mh),
        hostile.block_count(),
        ms(mx),
        cx.opts.timing_bound,
        ms(NOISE_FLOOR)
    );
    let ok = ratio <= cx.opts.timing_bound || mx.saturating_sub(mh) < NOISE_FLOOR;
    cx.verdict(&HOSTILE, ok, detail);
}
