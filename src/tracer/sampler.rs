//! Head sampling: whether a new span is recorded and exported.
//!
//! The decision is parent-based, as OpenTelemetry's default `ParentBased` sampler makes it: a
//! span with a sampled parent is sampled and a span with an unsampled parent is not, so a trace
//! is kept or dropped whole across services. Only a root span is decided here, by a trace-id
//! ratio: the trace id is hashed to a number and compared with a bound derived from the rate.
//! Because the hash depends on nothing but the trace id, every service that sees the trace id
//! takes the same decision without talking to the others.
//!
//! The arithmetic is OpenTelemetry JS's `TraceIdRatioBasedSampler`
//! (`packages/opentelemetry-sdk-trace-base/src/sampler/TraceIdRatioBasedSampler.ts` in
//! open-telemetry/opentelemetry-js), so that a bulwark service and an OTel JS service in the same
//! trace agree on every root they both could start:
//!
//! - `_upperBound = Math.floor(ratio * 0xffffffff)`, computed once per rate;
//! - `_accumulate(traceId)` XORs the four 8-hex-digit parts of the 32-digit trace id, each
//!   `parseInt(part, 16)`, keeping the result as an unsigned 32-bit number (`>>> 0`);
//! - the span is sampled when `isValidTraceId(traceId) && _accumulate(traceId) < _upperBound`.
//!
//! One deliberate difference: at rate 1 OTel JS still drops the one id in 2^32 whose parts XOR to
//! `0xffffffff` (it is not below the bound `0xffffffff`). A user who writes `sampleRate: 1` means
//! "every trace", so rate 1 here samples every valid trace id. Every rate below 1 gives OTel's
//! answer exactly, `f64` arithmetic included. Where OTel JS normalises a bad ratio silently
//! (NaN to 0, above 1 to 1), bulwark refuses it with an error naming the option.
//!
//! Rules pick a per-name rate for root spans: a rule matches a span name exactly or by prefix,
//! and the first matching rule wins. Rules whose matcher is a JS `RegExp` are evaluated in JS,
//! which then passes the chosen rate to [`Sampler::decide_with_rate`].

use crate::common::error::describe_number;
use crate::common::InvalidInput;

use super::ids::TraceId;

/// A validated sampling rate in `[0, 1]`, with OTel's upper bound precomputed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleRate {
    ratio: f64,
    /// `floor(ratio * 0xffffffff)`; a root is sampled when its accumulated trace id is below it.
    upper_bound: u64,
}

impl SampleRate {
    /// Samples no root span.
    pub const NEVER: SampleRate = SampleRate {
        ratio: 0.0,
        upper_bound: 0,
    };

    /// Samples every root span.
    pub const ALWAYS: SampleRate = SampleRate {
        ratio: 1.0,
        upper_bound: u32::MAX as u64,
    };

    /// The rate `value`, which must be a number in `[0, 1]`; `option` is the option's full path
    /// (`options.sampleRate`, `options.samplingRules[2].rate`), named in the error with the value.
    pub fn new(option: &str, value: f64) -> Result<Self, InvalidInput> {
        // `contains` is false for NaN, so NaN lands in the error branch too.
        if !(0.0..=1.0).contains(&value) {
            return Err(InvalidInput::option_range(format!(
                "{option} must be a number between 0 and 1, received {}",
                describe_number(value)
            )));
        }
        Ok(SampleRate {
            ratio: value,
            // Same f64 multiply and floor as `Math.floor(this._ratio * 0xffffffff)`; the result is
            // an integer in [0, 2^32 - 1], so the conversion is exact.
            upper_bound: (value * f64::from(u32::MAX)).floor() as u64,
        })
    }

    /// The rate as given.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// Whether a root span of `trace_id` is sampled at this rate: OTel JS's trace-id ratio test,
    /// except that rate 1 samples every valid id (see the module docs). The invalid (all-zero)
    /// trace id is never sampled, as in OTel.
    #[inline]
    pub fn samples(&self, trace_id: TraceId) -> bool {
        if !trace_id.is_valid() {
            return false;
        }
        if self.ratio >= 1.0 {
            return true;
        }
        u64::from(accumulate(trace_id)) < self.upper_bound
    }
}

/// OTel JS's `_accumulate`: the XOR of the trace id's four big-endian 32-bit words, which is what
/// `parseInt` of each 8-hex-digit slice XORed together (`>>> 0`) computes from the hex form.
#[inline]
fn accumulate(trace_id: TraceId) -> u32 {
    let bytes = trace_id.to_bytes();
    bytes.chunks_exact(4).fold(0u32, |acc, word| {
        acc ^ u32::from_be_bytes([word[0], word[1], word[2], word[3]])
    })
}

/// How a rule recognises a span name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpanMatcher {
    /// The name equals this string.
    Exact(String),
    /// The name starts with this string.
    Prefix(String),
}

impl SpanMatcher {
    /// Whether `name` matches.
    #[inline]
    pub fn matches(&self, name: &str) -> bool {
        match self {
            SpanMatcher::Exact(s) => name == s,
            SpanMatcher::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

/// A rate for the root spans whose name matches.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingRule {
    /// Which span names the rule applies to.
    pub matcher: SpanMatcher,
    /// The rate for those names.
    pub rate: SampleRate,
}

/// Parent-based sampling with a trace-id ratio for roots: a default rate and per-name rules.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampler {
    rate: SampleRate,
    rules: Vec<SamplingRule>,
}

impl Sampler {
    /// A sampler with the default rate `sample_rate` (validated as `options.sampleRate`) and
    /// `rules`, tried in order before the default.
    pub fn new(sample_rate: f64, rules: Vec<SamplingRule>) -> Result<Self, InvalidInput> {
        Ok(Sampler {
            rate: SampleRate::new("options.sampleRate", sample_rate)?,
            rules,
        })
    }

    /// The default rate, used by root spans that no rule matches.
    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[SamplingRule] {
        &self.rules
    }

    /// The rate a root span named `name` gets: the first matching rule's, else the default.
    pub fn rate_for(&self, name: &str) -> SampleRate {
        self.rules
            .iter()
            .find(|rule| rule.matcher.matches(name))
            .map_or(self.rate, |rule| rule.rate)
    }

    /// Whether a span named `name` is sampled. `parent_sampled` is the parent's sampled flag, or
    /// `None` for a root span.
    pub fn decide(&self, name: &str, parent_sampled: Option<bool>, trace_id: TraceId) -> bool {
        // The parent decides before any rule is looked at: a child never pays for matching.
        match parent_sampled {
            Some(sampled) => sampled,
            None => self.rate_for(name).samples(trace_id),
        }
    }

    /// The same decision with the root rate chosen by the caller, for rules evaluated in JS
    /// (`RegExp` matchers): parent-based, then `rate.samples(trace_id)` for a root.
    #[inline]
    pub fn decide_with_rate(
        rate: SampleRate,
        parent_sampled: Option<bool>,
        trace_id: TraceId,
    ) -> bool {
        match parent_sampled {
            Some(sampled) => sampled,
            None => rate.samples(trace_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ids::IdGenerator;
    use super::*;
    use crate::common::{ErrorCode, InvalidKind};
    use proptest::prelude::*;

    fn id(hex: &str) -> TraceId {
        TraceId::from_hex(hex).unwrap()
    }

    fn rate(value: f64) -> SampleRate {
        SampleRate::new("options.sampleRate", value).unwrap()
    }

    /// OTel JS's `_accumulate` transcribed on the hex string (parse each 8-digit slice, XOR), to
    /// check the byte-level version against the form the JS code actually runs on.
    fn accumulate_like_js(hex: &str) -> u32 {
        (0..hex.len() / 8).fold(0u32, |acc, i| {
            acc ^ u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).unwrap()
        })
    }

    #[test]
    fn upper_bounds_match_math_floor_of_ratio_times_0xffffffff() {
        // Each bound worked out by hand: ratio * 4294967295, then floor.
        for (ratio, bound) in [
            (0.0, 0u64),
            (1e-9, 4),                    // 4.294967295
            (0.1, 0x1999_9999),           // 429496729.5
            (0.25, 0x3fff_ffff),          // 1073741823.75
            (0.5, 0x7fff_ffff),           // 2147483647.5
            (0.9, 0xe666_6665),           // 3865470565.5
            (0.999_999_999, 0xffff_fffa), // 4294967290.705032705
            (1.0, 0xffff_ffff),
        ] {
            assert_eq!(rate(ratio).upper_bound, bound, "ratio {ratio}");
        }
    }

    #[test]
    fn decisions_near_the_boundary_match_otel_js() {
        // (trace id, rate, sampled), each worked out with OTel JS's formula: XOR of the four
        // 8-hex-digit parts, sampled iff it is below floor(rate * 0xffffffff).
        let table: &[(&str, f64, bool)] = &[
            // 0x7ffffffe < 0x7fffffff
            ("0000000000000000000000007ffffffe", 0.5, true),
            // 0x7fffffff is the bound itself: not below it
            ("0000000000000000000000007fffffff", 0.5, false),
            // deadbeef ^ deadbeef cancels; 7fffffff ^ 00000001 = 0x7ffffffe
            ("deadbeefdeadbeef7fffffff00000001", 0.5, true),
            // 80000000 ^ 00000000 ^ 00000000 ^ 00000000 = 0x80000000 > 0x7fffffff
            ("80000000000000000000000000000000", 0.5, false),
            // f0000000 ^ 0fffffff = 0xffffffff, far above 0x19999999
            ("f00000000fffffff0000000000000000", 0.1, false),
            // 10000000 ^ 09999998 = 0x19999998 < 0x19999999; the cafebabe pair cancels
            ("1000000009999998cafebabecafebabe", 0.1, true),
            // 0x19999998 ^ 0xcafebabe = 0xd3672326: one unpaired part moves it far above
            ("100000000999999800000000cafebabe", 0.1, false),
            // 0x19999999 equals the bound at 0.1
            ("00000000000000000000000019999999", 0.1, false),
            // 0x3ffffffe < 0x3fffffff at 0.25; 0x3fffffff is not
            ("3ffffffe000000000000000000000000", 0.25, true),
            ("3fffffff000000000000000000000000", 0.25, false),
            // 0xe6666664 < 0xe6666665 at 0.9; 0xe6666665 is not
            ("00000000e66666640000000000000000", 0.9, true),
            // e6666664 ^ ffffffff = 0x1999999b: the last part flips it well below the bound
            ("00000000e666666400000000ffffffff", 0.9, true),
            ("0000000000000000e666666500000000", 0.9, false),
            // bound 4 at 1e-9: 3 in, 4 out
            ("00000001000000020000000000000000", 1e-9, true),
            ("00000004000000000000000000000000", 1e-9, false),
            // bound 0xfffffffa at 0.999999999: 0xfffffff9 in, 0xfffffffa out
            ("fffffff9000000000000000000000000", 0.999_999_999, true),
            ("fffffffa000000000000000000000000", 0.999_999_999, false),
            // rate 1: 0xfffffffe is below the bound in OTel too
            ("fffffffe000000000000000000000000", 1.0, true),
        ];
        for &(hex, ratio, want) in table {
            let t = id(hex);
            // the byte-level XOR agrees with the JS string algorithm
            assert_eq!(accumulate(t), accumulate_like_js(hex), "{hex}");
            // and the decision agrees with OTel's comparison
            let otel =
                u64::from(accumulate_like_js(hex)) < (ratio * 4_294_967_295.0).floor() as u64;
            assert_eq!(
                otel, want,
                "table entry {hex} at {ratio} disagrees with OTel's formula"
            );
            assert_eq!(rate(ratio).samples(t), want, "{hex} at {ratio}");
        }
    }

    #[test]
    fn rate_one_samples_the_id_otel_js_drops() {
        // OTel JS: 0xffffffff < 0xffffffff is false, so it drops this id at ratio 1; bulwark's
        // documented difference is to keep it, since rate 1 means every trace.
        let t = id("ffffffff000000000000000000000000");
        assert_eq!(accumulate(t), u32::MAX);
        assert!(SampleRate::ALWAYS.samples(t));
        assert_eq!(rate(1.0), SampleRate::ALWAYS);
    }

    #[test]
    fn rate_zero_never_samples_and_rate_one_always_does() {
        let mut g = IdGenerator::from_seed(1);
        for _ in 0..10_000 {
            let t = g.trace_id();
            assert!(!rate(0.0).samples(t));
            assert!(rate(1.0).samples(t));
        }
        // parts that cancel to 0 are still not below bound 0, yet are below any positive bound
        let zero = id("00000001000000010000000000000000");
        assert_eq!(accumulate(zero), 0);
        assert!(!rate(0.0).samples(zero));
        assert!(rate(1e-9).samples(zero));
    }

    #[test]
    fn the_invalid_trace_id_is_never_sampled() {
        assert!(!SampleRate::ALWAYS.samples(TraceId::INVALID));
        assert!(!rate(0.5).samples(TraceId::INVALID));
    }

    #[test]
    fn bad_rates_are_range_errors_naming_the_option_and_value() {
        for (value, shown) in [
            (f64::NAN, "NaN"),
            (-0.1, "-0.1"),
            (1.5, "1.5"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            let err = Sampler::new(value, Vec::new()).unwrap_err();
            assert_eq!(err.kind, InvalidKind::Range);
            assert_eq!(err.code, ErrorCode::InvalidOption);
            assert!(
                err.message.contains("options.sampleRate"),
                "{}",
                err.message
            );
            assert!(err.message.ends_with(shown), "{}", err.message);
        }
        let err = SampleRate::new("options.samplingRules[2].rate", 2.0).unwrap_err();
        assert!(err.message.starts_with("options.samplingRules[2].rate "));
        // -0 is within [0, 1] and samples nothing
        assert_eq!(rate(-0.0).upper_bound, 0);
    }

    #[test]
    fn the_parent_decides_for_a_child() {
        let s = Sampler::new(0.0, Vec::new()).unwrap();
        let t = id("4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(s.decide("GET /", Some(true), t));
        assert!(!s.decide("GET /", None, t));
        let s = Sampler::new(1.0, Vec::new()).unwrap();
        assert!(!s.decide("GET /", Some(false), t));
        assert!(s.decide("GET /", None, t));
        assert!(Sampler::decide_with_rate(SampleRate::NEVER, Some(true), t));
        assert!(!Sampler::decide_with_rate(
            SampleRate::ALWAYS,
            Some(false),
            t
        ));
        assert!(Sampler::decide_with_rate(SampleRate::ALWAYS, None, t));
        assert!(!Sampler::decide_with_rate(SampleRate::NEVER, None, t));
    }

    #[test]
    fn the_first_matching_rule_wins_else_the_default() {
        let rules = vec![
            SamplingRule {
                matcher: SpanMatcher::Exact("GET /health".into()),
                rate: SampleRate::NEVER,
            },
            SamplingRule {
                matcher: SpanMatcher::Prefix("GET /".into()),
                rate: SampleRate::ALWAYS,
            },
            SamplingRule {
                matcher: SpanMatcher::Prefix("GET /admin".into()),
                rate: SampleRate::NEVER,
            },
        ];
        let s = Sampler::new(0.0, rules).unwrap();
        let t = id("4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s.rate_for("GET /health"), SampleRate::NEVER);
        // the prefix rule comes first, so the later, narrower one never applies
        assert_eq!(s.rate_for("GET /admin/users"), SampleRate::ALWAYS);
        // an exact rule does not match a longer name
        assert_eq!(s.rate_for("GET /healthz"), SampleRate::ALWAYS);
        assert_eq!(s.rate_for("POST /"), s.rate());
        assert!(!s.decide("GET /health", None, t));
        assert!(s.decide("GET /users", None, t));
        assert!(!s.decide("POST /users", None, t));
        // a sampled parent still wins over a rule that samples nothing
        assert!(s.decide("GET /health", Some(true), t));
        assert_eq!(s.rules().len(), 3);
    }

    #[test]
    fn the_sampled_fraction_is_within_one_percent_of_the_rate() {
        for ratio in [0.1, 0.5, 0.9] {
            let r = rate(ratio);
            let mut g = IdGenerator::from_seed(42);
            let n = 100_000;
            let sampled = (0..n).filter(|_| r.samples(g.trace_id())).count();
            let fraction = sampled as f64 / n as f64;
            assert!(
                (fraction - ratio).abs() <= 0.01,
                "rate {ratio}: sampled fraction {fraction}"
            );
        }
    }

    proptest! {
        #[test]
        fn a_sampled_id_stays_sampled_at_any_higher_rate(
            bytes in any::<[u8; 16]>(),
            a in 0.0f64..=1.0,
            b in 0.0f64..=1.0,
        ) {
            let t = TraceId::from_bytes(bytes);
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            if rate(low).samples(t) {
                prop_assert!(rate(high).samples(t));
            }
        }

        #[test]
        fn byte_and_hex_accumulation_agree(bytes in any::<[u8; 16]>()) {
            let t = TraceId::from_bytes(bytes);
            prop_assert_eq!(accumulate(t), accumulate_like_js(&t.to_hex()));
        }

        #[test]
        fn below_one_the_decision_is_otel_js_exactly(bytes in any::<[u8; 16]>(), ratio in 0.0f64..1.0) {
            let t = TraceId::from_bytes(bytes);
            let otel = t.is_valid()
                && f64::from(accumulate_like_js(&t.to_hex())) < (ratio * 4_294_967_295.0).floor();
            prop_assert_eq!(rate(ratio).samples(t), otel);
        }
    }
}
