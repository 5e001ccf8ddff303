//! Length-prefixed value lists, as `Bind` and `DataRow` carry them, and the
//! parsed `Bind` message. Borrowed from the frame body; every length is
//! bounds-checked, so a malformed message is `None`, never a panic.

/// `n` values (`i32` length, -1 = NULL, then the bytes) starting at `at`:
/// the values and the offset after the last one.
pub fn values(body: &[u8], mut at: usize, n: usize) -> Option<(Vec<Option<&[u8]>>, usize)> {
    // A count larger than the body could hold is malformed, not a reason
    // to reserve memory for it.
    let mut out = Vec::with_capacity(n.min(body.len() / 4 + 1));
    for _ in 0..n {
        let len = i32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        if len < 0 {
            out.push(None);
        } else {
            let end = at.checked_add(len as usize)?;
            out.push(Some(body.get(at..end)?));
            at = end;
        }
    }
    Some((out, at))
}

/// The values of a `DataRow` body (which must hold nothing else).
pub fn data_row(body: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let n = u16::from_be_bytes(body.get(..2)?.try_into().ok()?) as usize;
    let (vals, end) = values(body, 2, n)?;
    (end == body.len()).then_some(vals)
}

/// A parsed `Bind` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    /// Portal name.
    pub portal: &'a [u8],
    /// Statement name.
    pub statement: &'a [u8],
    /// Parameter format codes (none: all text; one: for all).
    pub param_formats: Vec<i16>,
    /// Parameter values (`None` = NULL).
    pub params: Vec<Option<&'a [u8]>>,
    /// Result format codes (none: all text; one: for all).
    pub result_formats: Vec<i16>,
}

impl<'a> Bind<'a> {
    /// Parses a `Bind` body; `None` when malformed.
    pub fn parse(body: &'a [u8]) -> Option<Self> {
        let cstr = |at: usize| -> Option<(&'a [u8], usize)> {
            let nul = body.get(at..)?.iter().position(|b| *b == 0)?;
            Some((&body[at..at + nul], at + nul + 1))
        };
        let i16_at = |at: usize| -> Option<i16> {
            Some(i16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?))
        };
        let count = |at: usize| -> Option<usize> { usize::try_from(i16_at(at)?).ok() };
        let codes = |at: usize, n: usize| -> Option<Vec<i16>> {
            (0..n).map(|i| i16_at(at + 2 * i)).collect()
        };
        let (portal, at) = cstr(0)?;
        let (statement, at) = cstr(at)?;
        let nfmt = count(at)?;
        let param_formats = codes(at + 2, nfmt)?;
        let at = at + 2 + 2 * nfmt;
        let (params, at) = values(body, at + 2, count(at)?)?;
        let nres = count(at)?;
        let result_formats = codes(at + 2, nres)?;
        Some(Self {
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        })
    }

    /// The format code of parameter `i` (0 text, 1 binary).
    pub fn param_format(&self, i: usize) -> i16 {
        match self.param_formats.len() {
            0 => 0,
            1 => self.param_formats[0],
            _ => self.param_formats.get(i).copied().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_and_rows() {
        let mut b = b"p\0s\0".to_vec();
        b.extend(1i16.to_be_bytes());
        b.extend(1i16.to_be_bytes());
        b.extend(2i16.to_be_bytes());
        b.extend(2i32.to_be_bytes());
        b.extend(b"42");
        b.extend((-1i32).to_be_bytes());
        b.extend(1i16.to_be_bytes());
        b.extend(1i16.to_be_bytes());
        let bind = Bind::parse(&b).unwrap();
        assert_eq!((bind.portal, bind.statement), (&b"p"[..], &b"s"[..]));
        assert_eq!(bind.params, vec![Some(&b"42"[..]), None]);
        assert_eq!(
            (bind.param_format(1), bind.result_formats.clone()),
            (1, vec![1])
        );
        // Truncated anywhere: None, no panic.
        for cut in 0..b.len() {
            assert!(Bind::parse(&b[..cut]).is_none(), "cut at {cut}");
        }
        // Negative counts and huge lengths are malformed.
        let mut bad = b"p\0s\0".to_vec();
        bad.extend((-5i16).to_be_bytes());
        assert!(Bind::parse(&bad).is_none());
        let mut row = 1u16.to_be_bytes().to_vec();
        row.extend(i32::MAX.to_be_bytes());
        assert!(data_row(&row).is_none());
        let mut row = 2u16.to_be_bytes().to_vec();
        row.extend(1i32.to_be_bytes());
        row.push(b'x');
        row.extend((-1i32).to_be_bytes());
        assert_eq!(data_row(&row), Some(vec![Some(&b"x"[..]), None]));
        row.push(0);
        assert!(data_row(&row).is_none(), "trailing bytes");
    }
}
