// Numerically careful scalar helpers shared by every loss.
//
// WGSL has no log1p/expm1, and `log(1.0 + u)` loses all relative precision for small u.
// The usual `log(w) * u / (w - 1)` trick is not used: drivers that compile SPIR-V with
// algebraic simplification (Mesa's NIR does) may fold `(1 + u) - 1` back to `u`.
// Short Taylor series below a threshold are immune to that and cost a few FMAs.

const LN_2: f32 = 0.6931471805599453;

// True for finite values. Bit test, because fast-math compilers may fold `x != x`.
fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// True for NaN, by bits as is_finite.
fn is_nan_(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

// log(1 + u) for u > -1; rel. error ~1e-7 everywhere.
fn log1p_(u: f32) -> f32 {
    if (abs(u) < 0.1) {
        // u - u^2/2 + ... + u^8/8 (Horner); truncation error < u^9/9 < 1.2e-10 relative.
        let p = 1.0 / 8.0;
        var s = -p;
        s = s * u + 1.0 / 7.0;
        s = s * u - 1.0 / 6.0;
        s = s * u + 1.0 / 5.0;
        s = s * u - 1.0 / 4.0;
        s = s * u + 1.0 / 3.0;
        s = s * u - 1.0 / 2.0;
        s = s * u + 1.0;
        return s * u;
    }
    return log(1.0 + u);
}

// exp(x) - 1, accurate for small |x|.
fn expm1_(x: f32) -> f32 {
    if (abs(x) < 0.1) {
        var s = 1.0 / 40320.0;
        s = s * x + 1.0 / 5040.0;
        s = s * x + 1.0 / 720.0;
        s = s * x + 1.0 / 120.0;
        s = s * x + 1.0 / 24.0;
        s = s * x + 1.0 / 6.0;
        s = s * x + 1.0 / 2.0;
        s = s * x + 1.0;
        return s * x;
    }
    return exp(x) - 1.0;
}

// log(1 + exp(x)) without overflow; exact limits at +-inf.
fn softplus(x: f32) -> f32 {
    return max(x, 0.0) + log1p_(exp(-abs(x)));
}

// 1 / (1 + exp(-x)) without overflow for either sign.
fn sigmoid(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

// tanh with full relative precision near 0 and no inf/inf at large |x|.
fn tanh_(x: f32) -> f32 {
    let e = expm1_(-2.0 * abs(x));
    return sign(x) * (-e / (2.0 + e));
}

// log(cosh(x)) = |x| + softplus(-2|x|) - ln 2, with a series near 0 where that
// difference cancels.
fn log_cosh(x: f32) -> f32 {
    let a = abs(x);
    if (a < 0.3) {
        let x2 = a * a;
        // x^2/2 - x^4/12 + x^6/45 - 17 x^8/2520 + 31 x^10/14175
        var s = 31.0 / 14175.0;
        s = s * x2 - 17.0 / 2520.0;
        s = s * x2 + 1.0 / 45.0;
        s = s * x2 - 1.0 / 12.0;
        s = s * x2 + 1.0 / 2.0;
        return s * x2;
    }
    return a + log1p_(exp(-2.0 * a)) - LN_2;
}

// log(e^a + e^b) without overflow or underflow; -inf when both are -inf.
fn log_add_exp(a: f32, b: f32) -> f32 {
    if (a == b) {
        return a + LN_2;
    }
    return max(a, b) + log1p_(exp(-abs(a - b)));
}
