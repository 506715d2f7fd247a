//! Just enough of RFC 8941 (Structured Field Values) to validate and read a Dictionary:
//! the syntax of the targeted cache-control fields (RFC 9213).

/// A member's value, as far as cache directives care.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Value {
    /// Boolean true, or a bare key.
    True,
    /// Boolean false.
    False,
    /// An Integer, as written (`-5`, `60`).
    Integer(String),
    /// A String, its escapes resolved.
    String(String),
    /// Any other Item or an Inner List.
    Other,
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

/// Parses a Dictionary (RFC 8941 §4.2.2); `None` when the input is not one. A
/// repeated key keeps its last value, at its first place.
pub(super) fn dictionary(input: &[u8]) -> Option<Vec<(String, Value)>> {
    let mut p = Parser { input, pos: 0 };
    p.skip(|b| b == b' ');
    let mut out: Vec<(String, Value)> = Vec::new();
    while p.peek().is_some() {
        let key = p.key()?;
        let value = if p.eat(b'=') {
            p.item_or_inner_list()?
        } else {
            p.parameters()?;
            Value::True
        };
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => out.push((key, value)),
        }
        p.skip(|b| b == b' ' || b == b'\t');
        if p.peek().is_none() {
            break;
        }
        if !p.eat(b',') {
            return None;
        }
        p.skip(|b| b == b' ' || b == b'\t');
        // Something must follow the comma.
        p.peek()?;
    }
    Some(out)
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
    }

    fn key(&mut self) -> Option<String> {
        let start = self.pos;
        if !self
            .peek()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
        {
            return None;
        }
        self.skip(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'*')
        });
        Some(String::from_utf8_lossy(&self.input[start..self.pos]).into_owned())
    }

    fn item_or_inner_list(&mut self) -> Option<Value> {
        if self.eat(b'(') {
            loop {
                self.skip(|b| b == b' ');
                if self.eat(b')') {
                    break;
                }
                self.bare_item()?;
                self.parameters()?;
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return None;
                }
            }
            self.parameters()?;
            return Some(Value::Other);
        }
        let value = self.bare_item()?;
        self.parameters()?;
        Some(value)
    }

    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.skip(|b| b == b' ');
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    fn bare_item(&mut self) -> Option<Value> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b':' => self.byte_sequence(),
            b'?' => {
                self.pos += 1;
                match self.peek()? {
                    b'1' => {
                        self.pos += 1;
                        Some(Value::True)
                    }
                    b'0' => {
                        self.pos += 1;
                        Some(Value::False)
                    }
                    _ => None,
                }
            }
            b if b.is_ascii_alphabetic() || b == b'*' => {
                self.skip(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b));
                Some(Value::Other)
            }
            _ => None,
        }
    }

    /// An Integer (at most 15 digits) or a Decimal (at most 12 digits, `.`, 1 to 3).
    fn number(&mut self) -> Option<Value> {
        let start = self.pos;
        self.eat(b'-');
        let int_start = self.pos;
        self.skip(|b| b.is_ascii_digit());
        let int_digits = self.pos - int_start;
        if int_digits == 0 {
            return None;
        }
        if !self.eat(b'.') {
            if int_digits > 15 {
                return None;
            }
            let digits = String::from_utf8_lossy(&self.input[start..self.pos]).into_owned();
            return Some(Value::Integer(digits));
        }
        let frac_start = self.pos;
        self.skip(|b| b.is_ascii_digit());
        let frac_digits = self.pos - frac_start;
        if int_digits > 12 || frac_digits == 0 || frac_digits > 3 {
            return None;
        }
        Some(Value::Other)
    }

    fn string(&mut self) -> Option<Value> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(Value::String(out));
                }
                b'\\' => {
                    self.pos += 1;
                    let escaped = self.peek()?;
                    if !matches!(escaped, b'"' | b'\\') {
                        return None;
                    }
                    out.push(char::from(escaped));
                    self.pos += 1;
                }
                b @ 0x20..=0x7e => {
                    out.push(char::from(b));
                    self.pos += 1;
                }
                _ => return None,
            }
        }
    }

    fn byte_sequence(&mut self) -> Option<Value> {
        self.pos += 1;
        self.skip(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        self.eat(b':').then_some(Value::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_field_dictionaries() {
        use Value::*;
        let ok = |v: &str| dictionary(v.as_bytes()).expect(v);
        assert_eq!(
            ok("  max-age=60, no-store,private=?0,\tx=?1;p=\"q\", *k.v_2=:YWJj:, t=tok/en:1"),
            vec![
                ("max-age".to_owned(), Integer("60".to_owned())),
                ("no-store".to_owned(), True),
                ("private".to_owned(), False),
                ("x".to_owned(), True),
                ("*k.v_2".to_owned(), Other),
                ("t".to_owned(), Other),
            ]
        );
        assert_eq!(
            ok("a=(1 \"b\";c=1 d);e, f=-1.25"),
            vec![("a".to_owned(), Other), ("f".to_owned(), Other),]
        );
        assert_eq!(
            ok(r#"no-cache="Set-Cookie, x-a", p="a\"b\\c""#),
            vec![
                ("no-cache".to_owned(), String("Set-Cookie, x-a".to_owned())),
                ("p".to_owned(), String("a\"b\\c".to_owned())),
            ]
        );
        assert!(ok("").is_empty());
        for bad in [
            "A=1",
            "a=",
            "a=1,",
            ",a",
            "a=\"x",
            "a=\"\\n\"",
            "a=?2",
            "a=1.",
            "a=1.2345",
            "a=1234567890123456",
            "a=(1",
            "a=(1)x",
            "a=:YWJj",
            "a b",
            "a=é",
            "a;=1",
        ] {
            assert_eq!(dictionary(bad.as_bytes()), None, "{bad}");
        }
    }
}
