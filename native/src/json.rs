//! JSON bytes exactly as cdc_bridge.jsoncodec writes and reads them.
//!
//! Writing (jsoncodec.dumps): compact, UTF-8, non-ASCII as is; `"`, `\` and the control
//! characters escaped (\b \f \n \r \t, the others \u00XX in lowercase hex), DEL and U+2028/9
//! as is. Floats: repr()'s shortest digits, laid out as orjson 3.13 does, which is repr()'s
//! layout except for 1e-9 <= |x| < 1e-4 (exponent -5: "0.00001234" where repr writes
//! "1.234e-05"; exponents -6..-9 without the zero padding: "2.5e-7"). A document holding an
//! int beyond 64 bits is refused by orjson and written by the stdlib (json.dumps): then the
//! floats take repr()'s layout everywhere. The writer notes both while writing and writes such a
//! document again in the stdlib's layout (rare: only then do the two differ).
//!
//! Reading (jsoncodec.loads): what dumps wrote. NaN / Infinity tokens, numbers beyond the
//! float range, lone surrogates, raw control characters in strings, deep nesting and anything
//! not JSON are Unsupported (the Python path then gives its value or its error).

use std::rc::Rc;

use crate::unsupported;
use crate::value::{map_with_capacity, Map, Val, R};

/// Nesting accepted when reading a state document (see value::MAX_PY_DEPTH).
pub const MAX_JSON_DEPTH: usize = 200;
/// orjson writes up to this many nested containers; deeper documents take the stdlib.
pub const ORJSON_MAX_DEPTH: usize = 254;

// ------------------------------------------------------------------------------- writing

pub struct Writer {
    pub buf: Vec<u8>,
    /// the stdlib's float layout (the document holds an int beyond 64 bits)
    repr: bool,
    /// an int beyond 64 bits was written
    pub big: bool,
    /// a float whose orjson and repr() layouts differ was written
    pub special: bool,
}

impl Writer {
    pub fn new(capacity: usize) -> Self {
        Writer { buf: Vec::with_capacity(capacity), repr: false, big: false, special: false }
    }

    pub fn value(&mut self, v: &Val) {
        match v {
            Val::Null => self.buf.extend_from_slice(b"null"),
            Val::Bool(true) => self.buf.extend_from_slice(b"true"),
            Val::Bool(false) => self.buf.extend_from_slice(b"false"),
            Val::Int(i) => self.buf.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            Val::UInt(u) => self.buf.extend_from_slice(itoa::Buffer::new().format(*u).as_bytes()),
            Val::Big(s) => {
                self.big = true;
                self.buf.extend_from_slice(s.as_bytes());
            }
            Val::Float(f) => {
                if write_float(&mut self.buf, *f, self.repr) {
                    self.special = true;
                }
            }
            Val::Str(s) => write_str(&mut self.buf, s),
            Val::List(l) => {
                self.buf.push(b'[');
                for (i, x) in l.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b',');
                    }
                    self.value(x);
                }
                self.buf.push(b']');
            }
            Val::Dict(d) => self.map(d),
            Val::Raw(r) => {
                if r.special {
                    self.special = true;
                    if self.repr {
                        // written for orjson's layout: the stdlib's instead (the document holds a big int)
                        let v = parse_slice(r.bytes()).expect("raw JSON was checked canonical");
                        self.value(&v);
                        return;
                    }
                }
                self.buf.extend_from_slice(r.bytes());
            }
        }
    }

    pub fn map(&mut self, m: &Map) {
        self.buf.push(b'{');
        for (i, (k, x)) in m.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            write_str(&mut self.buf, k);
            self.buf.push(b':');
            self.value(x);
        }
        self.buf.push(b'}');
    }
}

/// jsoncodec.dumps(map)
pub fn dumps_map(m: &Map) -> Vec<u8> {
    let mut w = Writer::new(64 + 24 * m.len());
    w.map(m);
    finish(w, |w| w.map(m))
}

/// jsoncodec.dumps(value)
pub fn dumps(v: &Val) -> Vec<u8> {
    let mut w = Writer::new(64);
    w.value(v);
    finish(w, |w| w.value(v))
}

fn finish(w: Writer, again: impl Fn(&mut Writer)) -> Vec<u8> {
    if w.big && w.special {
        // orjson refuses the document (an int beyond 64 bits): the stdlib's float layout throughout
        let mut w2 = Writer { buf: Vec::with_capacity(w.buf.len() + 16), repr: true, big: false, special: false };
        again(&mut w2);
        return w2.buf;
    }
    w.buf
}

static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

pub fn write_str(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    buf.reserve(bytes.len() + 2);
    buf.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let e = ESCAPE[b as usize];
        if e == 0 {
            continue;
        }
        buf.extend_from_slice(&bytes[start..i]);
        if e == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            buf.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        } else {
            buf.extend_from_slice(&[b'\\', e]);
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

/// Writes a finite float; true if its orjson and repr() layouts differ (1e-9 <= |x| < 1e-4).
pub fn write_float(buf: &mut Vec<u8>, f: f64, repr: bool) -> bool {
    if f == 0.0 {
        buf.extend_from_slice(if f.is_sign_negative() { b"-0.0" } else { b"0.0" });
        return false;
    }
    // shortest round-trip digits, ties to even (zmij; repr() and orjson agree), in whatever layout
    // zmij writes ("1.5e-7", "1e16", "0.001", "123.0"): read back as digits and a decimal exponent
    let mut zb = zmij::Buffer::new();
    let s = zb.format_finite(f.abs()).as_bytes();
    let (mant, e10) = match s.iter().position(|&c| c == b'e' || c == b'E') {
        Some(p) => (&s[..p], std::str::from_utf8(&s[p + 1..]).unwrap().parse::<i32>().unwrap()),
        None => (s, 0),
    };
    let int_len = mant.iter().position(|&c| c == b'.').unwrap_or(mant.len());
    let mut all = [0u8; 40];
    let mut n_all = 0;
    for &c in mant {
        if c != b'.' {
            all[n_all] = c;
            n_all += 1;
        }
    }
    let lz = all[..n_all].iter().take_while(|&&c| c == b'0').count();
    let mut end = n_all;
    while end > lz && all[end - 1] == b'0' {
        end -= 1;
    }
    let digits = &all[lz..end];
    let n = digits.len();
    let exp: i32 = int_len as i32 - lz as i32 - 1 + e10;
    if f < 0.0 {
        buf.push(b'-');
    }
    let special = (-9..=-5).contains(&exp);
    let fixed_from = if repr { -4 } else { -5 };
    if exp >= fixed_from && exp < 16 {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if n <= int_len {
                buf.extend_from_slice(digits);
                buf.extend(std::iter::repeat(b'0').take(int_len - n));
                buf.extend_from_slice(b".0");
            } else {
                buf.extend_from_slice(&digits[..int_len]);
                buf.push(b'.');
                buf.extend_from_slice(&digits[int_len..]);
            }
        } else {
            buf.extend_from_slice(b"0.");
            buf.extend(std::iter::repeat(b'0').take((-exp - 1) as usize));
            buf.extend_from_slice(digits);
        }
    } else {
        buf.push(digits[0]);
        if n > 1 {
            buf.push(b'.');
            buf.extend_from_slice(&digits[1..]);
        }
        buf.push(b'e');
        buf.push(if exp < 0 { b'-' } else { b'+' });
        let a = exp.unsigned_abs();
        if a < 10 && repr {
            buf.push(b'0');
        }
        buf.extend_from_slice(itoa::Buffer::new().format(a).as_bytes());
    }
    special
}

// ------------------------------------------------------------------------------- reading

pub fn loads(b: &[u8]) -> R<Val> {
    // UTF-8 checked once; string slices are then cut at ASCII bytes only
    std::str::from_utf8(b).map_err(|_| unsupported!("state JSON is not UTF-8"))?;
    let mut p = Parser { b, i: 0, depth: 0, what: "", raw: None };
    let parsed = (|| {
        p.ws();
        let v = p.value()?;
        p.ws();
        if p.i != b.len() {
            return Err(p.err("trailing data"));
        }
        Ok(v)
    })();
    parsed.map_err(|PErr| unsupported!("state JSON: {} at byte {}", p.what, p.i))
}

/// A state document (see the module doc): jsoncodec.loads, except that the children's fields
/// (state["children"][name][id]) that are written exactly as the writer would write them stay
/// raw bytes (Val::Raw): a transaction touches few of them, the others are copied as they are.
pub fn loads_state(b: &[u8]) -> R<Val> {
    if has_digit_run(b, 19) {
        // an int beyond 64 bits may be there: the document was written in the stdlib's layout
        return loads(b);
    }
    std::str::from_utf8(b).map_err(|_| unsupported!("state JSON is not UTF-8"))?;
    let mut p = Parser { b, i: 0, depth: 0, what: "", raw: Some(Rc::from(b)) };
    let parsed = (|| {
        p.ws();
        let v = if p.peek() == Some(b'{') { p.object_with(Parser::state_item, true)? } else { p.value()? };
        p.ws();
        if p.i != b.len() {
            return Err(p.err("trailing data"));
        }
        Ok(v)
    })();
    parsed.map_err(|PErr| unsupported!("state JSON: {} at byte {}", p.what, p.i))
}

/// Bytes known to be one JSON object exactly as Writer writes it in orjson's layout.
#[derive(Debug)]
pub struct RawJson {
    buf: Rc<[u8]>,
    start: usize,
    end: usize,
    /// it holds floats whose orjson and repr() layouts differ
    pub special: bool,
}

impl RawJson {
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// `len(d) == 0`
    pub fn is_empty(&self) -> bool {
        self.end - self.start == 2
    }

    pub fn parse(&self) -> Val {
        parse_slice(self.bytes()).expect("raw JSON was checked canonical")
    }
}

/// Parses a canonical slice (no UTF-8 check: it comes from a checked document).
fn parse_slice(b: &[u8]) -> R<Val> {
    let mut p = Parser { b, i: 0, depth: 0, what: "", raw: None };
    p.value().map_err(|PErr| unsupported!("raw JSON: {}", p.what))
}

/// A parse error; its message stays in the parser (a small error keeps Result<Val, _> in registers).
struct PErr;

type P<T> = Result<T, PErr>;

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
    what: &'static str,
    /// loads_state: the document, shared by its raw parts
    raw: Option<Rc<[u8]>>,
}

impl<'a> Parser<'a> {
    #[cold]
    fn err(&mut self, what: &'static str) -> PErr {
        self.what = what;
        PErr
    }

    #[inline]
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn lit(&mut self, word: &[u8], v: Val) -> P<Val> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("unexpected token"))
        }
    }

    fn value(&mut self) -> P<Val> {
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => Ok(Val::Str(self.string()?)),
            Some(b't') => self.lit(b"true", Val::Bool(true)),
            Some(b'f') => self.lit(b"false", Val::Bool(false)),
            Some(b'n') => self.lit(b"null", Val::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err("unexpected token")),
        }
    }

    fn enter(&mut self) -> P<()> {
        self.depth += 1;
        if self.depth > MAX_JSON_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.i += 1;
        self.ws();
        Ok(())
    }

    fn object(&mut self) -> P<Val> {
        self.object_with(Self::value, true)
    }

    /// An object whose values are read by `item` (the state's levels read their values their own way);
    /// `names`: its keys are names that recur (interned), not ids.
    fn object_with(&mut self, item: fn(&mut Self) -> P<Val>, names: bool) -> P<Val> {
        self.enter()?;
        let mut m = map_with_capacity(8);
        if self.peek() == Some(b'}') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Val::Dict(Rc::new(m)));
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a key"));
            }
            let k = self.key(names)?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expected ':'"));
            }
            self.i += 1;
            self.ws();
            let v = item(self)?;
            m.insert(k, v); // a repeated key: first position, last value (as a Python dict)
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
        self.depth -= 1;
        Ok(Val::Dict(Rc::new(m)))
    }

    /// A value of the state's top level: "children" is read by colls_item.
    fn state_item(&mut self) -> P<Val> {
        // the key just read is the one before ':'; find it from the bytes (state keys are plain)
        if self.peek() == Some(b'{') {
            if self.b[..self.i].ends_with(b"\"children\":") {
                return self.object_with(Self::colls_item, true);
            }
            if self.b[..self.i].ends_with(b"\"held\":") {
                return self.object_with(Self::ids_item, true);
            }
        }
        self.value()
    }

    /// A collection of state["held"]: {id: entry}.
    fn ids_item(&mut self) -> P<Val> {
        if self.peek() == Some(b'{') {
            return self.object_with(Self::value, false);
        }
        self.value()
    }

    /// A collection of state["children"]: {id: fields}.
    fn colls_item(&mut self) -> P<Val> {
        if self.peek() == Some(b'{') {
            return self.object_with(Self::child_item, false);
        }
        self.value()
    }

    /// A child's fields: raw when canonical.
    fn child_item(&mut self) -> P<Val> {
        if self.peek() == Some(b'{') {
            if let Some(buf) = &self.raw {
                let mut sc = Scan { b: self.b, i: self.i, depth: self.depth, special: false, keys: Vec::new() };
                if sc.value() {
                    let raw = RawJson { buf: buf.clone(), start: self.i, end: sc.i, special: sc.special };
                    self.i = sc.i;
                    return Ok(Val::Raw(Rc::new(raw)));
                }
            }
        }
        self.value()
    }

    fn array(&mut self) -> P<Val> {
        self.enter()?;
        let mut out = Vec::new();
        if self.peek() == Some(b']') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Val::List(Rc::new(out)));
        }
        loop {
            out.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b']') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
        self.depth -= 1;
        Ok(Val::List(Rc::new(out)))
    }

    /// An object's key: interned when a name (no escapes: the plain bytes are the name).
    fn key(&mut self, names: bool) -> P<Rc<str>> {
        if names {
            let start = self.i + 1;
            let mut i = start;
            while i < self.b.len() && ESCAPE[self.b[i] as usize] == 0 {
                i += 1;
            }
            if self.b.get(i) == Some(&b'"') {
                self.i = i + 1;
                // SAFETY: as in string()
                return Ok(crate::value::intern(unsafe { std::str::from_utf8_unchecked(&self.b[start..i]) }));
            }
        }
        self.string()
    }

    fn string(&mut self) -> P<Rc<str>> {
        self.i += 1; // the opening quote
        let start = self.i;
        let b = self.b;
        let mut i = start;
        while i < b.len() {
            // plain bytes: not '"', '\\' nor a control character
            while i < b.len() && ESCAPE[b[i] as usize] == 0 {
                i += 1;
            }
            if i == b.len() {
                break;
            }
            let c = b[i];
            if c == b'"' {
                self.i = i + 1;
                // SAFETY: loads() checked the whole input is UTF-8, and start / i sit next to ASCII
                // quotes, so the slice is whole characters
                return Ok(Rc::from(unsafe { std::str::from_utf8_unchecked(&b[start..i]) }));
            }
            if c == b'\\' {
                break;
            }
            if c < 0x20 {
                self.i = i;
                return Err(self.err("control character in a string"));
            }
            i += 1;
        }
        // escapes: the slow path
        let mut out: Vec<u8> = b[start..i].to_vec();
        while i < b.len() {
            let c = b[i];
            match c {
                b'"' => {
                    self.i = i + 1;
                    return Ok(Rc::from(String::from_utf8(out).map_err(|_| self.err("bad UTF-8"))?));
                }
                b'\\' => {
                    let e = *b.get(i + 1).ok_or_else(|| self.err("unterminated escape"))?;
                    i += 2;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let hi = self.hex4(i)?;
                            i += 4;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                // a surrogate pair, or a lone surrogate (not representable: Unsupported)
                                if b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'u') {
                                    let lo = self.hex4(i + 2)?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return Err(self.err("lone surrogate"));
                                    }
                                    i += 6;
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    return Err(self.err("lone surrogate"));
                                }
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(self.err("lone surrogate"));
                            } else {
                                hi
                            };
                            let ch = char::from_u32(cp).ok_or_else(|| self.err("bad code point"))?;
                            let mut tmp = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                        }
                        _ => return Err(self.err("bad escape")),
                    }
                }
                c if c < 0x20 => return Err(self.err("control character in a string")),
                _ => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        Err(self.err("unterminated string"))
    }

    fn hex4(&mut self, at: usize) -> P<u32> {
        let h = self.b.get(at..at + 4).ok_or_else(|| self.err("short \\u escape"))?;
        let mut v = 0u32;
        for &c in h {
            let d = (c as char).to_digit(16).ok_or_else(|| self.err("bad \\u escape"))?;
            v = v * 16 + d;
        }
        Ok(v)
    }

    fn number(&mut self) -> P<Val> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        if b[i] == b'-' {
            i += 1;
        }
        let int_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let int_digits = i - int_start;
        if int_digits == 0 || (int_digits > 1 && b[int_start] == b'0') {
            self.i = i;
            return Err(self.err("bad number"));
        }
        let mut is_float = false;
        if i < b.len() && b[i] == b'.' {
            is_float = true;
            i += 1;
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == s {
                self.i = i;
                return Err(self.err("bad number"));
            }
        }
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            is_float = true;
            i += 1;
            if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                i += 1;
            }
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == s {
                self.i = i;
                return Err(self.err("bad number"));
            }
        }
        self.i = i;
        // SAFETY: ASCII digits, signs, '.', 'e' only
        let text = unsafe { std::str::from_utf8_unchecked(&b[start..i]) };
        if is_float {
            let f: f64 = text.parse().map_err(|_| self.err("bad float"))?;
            if !f.is_finite() {
                return Err(self.err("a float beyond the float range"));
            }
            return Ok(Val::Float(f));
        }
        if let Ok(v) = text.parse::<i64>() {
            return Ok(Val::Int(v));
        }
        if let Ok(v) = text.parse::<u64>() {
            return Ok(Val::UInt(v));
        }
        if int_digits > 4300 {
            // json.loads raises ValueError past sys.get_int_max_str_digits()
            return Err(self.err("an int of more than 4300 digits"));
        }
        Ok(Val::Big(Rc::from(text)))
    }
}

// ------------------------------------------------------------------------------- canonical form

/// Checks that a value is written exactly as Writer writes its parsed value (orjson's layout): no
/// whitespace, minimal string escapes (\" \\ \b \f \n \r \t, \u00xx for the other control
/// characters, lowercase), floats as write_float writes them, no "-0", no repeated keys, ints
/// within 18 digits (the caller ruled out longer runs), nesting within MAX_JSON_DEPTH.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
    special: bool,
    keys: Vec<(usize, usize)>,
}

impl Scan<'_> {
    #[inline]
    fn at(&self) -> u8 {
        self.b.get(self.i).copied().unwrap_or(0)
    }

    fn value(&mut self) -> bool {
        match self.at() {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => self.string(),
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => false,
        }
    }

    fn word(&mut self, w: &[u8]) -> bool {
        if self.b[self.i..].starts_with(w) {
            self.i += w.len();
            true
        } else {
            false
        }
    }

    fn object(&mut self) -> bool {
        self.depth += 1;
        if self.depth > MAX_JSON_DEPTH {
            return false;
        }
        self.i += 1;
        let base = self.keys.len();
        if self.at() == b'}' {
            self.i += 1;
            self.depth -= 1;
            return true;
        }
        loop {
            let ks = self.i;
            if self.at() != b'"' || !self.string() {
                return false;
            }
            self.keys.push((ks, self.i));
            if self.at() != b':' {
                return false;
            }
            self.i += 1;
            if !self.value() {
                return false;
            }
            match self.at() {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    break;
                }
                _ => return false,
            }
        }
        // canonical strings have one spelling each: equal bytes <=> equal keys
        let keys = &self.keys[base..];
        let b = self.b;
        let dup = if keys.len() <= 16 {
            keys.iter().enumerate().any(|(n, &(s, e))| keys[..n].iter().any(|&(s2, e2)| b[s..e] == b[s2..e2]))
        } else {
            let mut v: Vec<&[u8]> = keys.iter().map(|&(s, e)| &b[s..e]).collect();
            v.sort_unstable();
            v.windows(2).any(|w| w[0] == w[1])
        };
        self.keys.truncate(base);
        self.depth -= 1;
        !dup
    }

    fn array(&mut self) -> bool {
        self.depth += 1;
        if self.depth > MAX_JSON_DEPTH {
            return false;
        }
        self.i += 1;
        if self.at() == b']' {
            self.i += 1;
            self.depth -= 1;
            return true;
        }
        loop {
            if !self.value() {
                return false;
            }
            match self.at() {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    break;
                }
                _ => return false,
            }
        }
        self.depth -= 1;
        true
    }

    fn string(&mut self) -> bool {
        self.i += 1;
        let b = self.b;
        loop {
            while self.i < b.len() && ESCAPE[b[self.i] as usize] == 0 {
                self.i += 1;
            }
            let Some(&c) = b.get(self.i) else { return false };
            match c {
                b'"' => {
                    self.i += 1;
                    return true;
                }
                b'\\' => {
                    match b.get(self.i + 1) {
                        Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                        Some(b'u') => {
                            // only \u00xx (lowercase) for a control character without a short escape
                            let Some(h) = b.get(self.i + 2..self.i + 6) else { return false };
                            let hex = |c: u8| match c {
                                b'0'..=b'9' => Some(c - b'0'),
                                b'a'..=b'f' => Some(c - b'a' + 10),
                                _ => None,
                            };
                            if h[0] != b'0' || h[1] != b'0' {
                                return false;
                            }
                            let (Some(x), Some(y)) = (hex(h[2]), hex(h[3])) else { return false };
                            let cp = x * 16 + y;
                            if cp >= 0x20 || ESCAPE[cp as usize] != b'u' {
                                return false;
                            }
                            self.i += 6;
                        }
                        _ => return false,
                    }
                }
                c if c < 0x20 => return false,
                _ => self.i += 1,
            }
        }
    }

    fn number(&mut self) -> bool {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        if b[i] == b'-' {
            i += 1;
        }
        let int_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = i - int_start;
        if digits == 0 || (digits > 1 && b[int_start] == b'0') {
            return false;
        }
        let is_float = i < b.len() && matches!(b[i], b'.' | b'e' | b'E');
        if !is_float {
            self.i = i;
            // "-0" reads as 0, written "0"; longer ints may leave 64 bits
            return digits <= 18 && &b[start..i] != b"-0";
        }
        if b[i] == b'.' {
            i += 1;
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == s {
                return false;
            }
        }
        if i < b.len() && matches!(b[i], b'e' | b'E') {
            i += 1;
            if i < b.len() && matches!(b[i], b'+' | b'-') {
                i += 1;
            }
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == s {
                return false;
            }
        }
        self.i = i;
        // SAFETY: ASCII digits, signs, '.', 'e' only
        let text = unsafe { std::str::from_utf8_unchecked(&b[start..i]) };
        let Ok(f) = text.parse::<f64>() else { return false };
        if !f.is_finite() {
            return false;
        }
        let mut tmp = Vec::with_capacity(32);
        let special = write_float(&mut tmp, f, false);
        if tmp != b[start..i] {
            return false;
        }
        self.special |= special;
        true
    }
}

// ------------------------------------------------------------------------------- scanning

/// Upper bound of the nesting of a JSON document (brackets outside strings), exact for what dumps writes.
pub fn max_depth(b: &[u8]) -> usize {
    let (mut d, mut max, mut i) = (0usize, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'[' | b'{' => {
                d += 1;
                max = max.max(d);
            }
            b']' | b'}' => d = d.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    max
}

/// Whether `b` holds a run of at least `n` ASCII digits (an int beyond 64 bits has 19 or more).
/// Such a run covers one of every n-th positions: probe those, look around a probe that is a digit.
pub fn has_digit_run(b: &[u8], n: usize) -> bool {
    debug_assert!(n > 0);
    let mut i = n - 1;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += n;
            continue;
        }
        let mut s = i;
        while s > 0 && b[s - 1].is_ascii_digit() {
            s -= 1;
        }
        let mut e = i + 1;
        while e < b.len() && b[e].is_ascii_digit() {
            e += 1;
        }
        if e - s >= n {
            return true;
        }
        i = e + n; // a run is at most until e - 1: the next one starts at e + 1 or later
    }
    false
}

/// Count of bytes that open a container (an upper bound of the nesting, strings included).
pub fn opener_count(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'[' || c == b'{').count()
}
