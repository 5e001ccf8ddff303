//! Just enough of a BTF reader to find kernel function and struct ids and
//! struct member offsets in `/sys/kernel/btf/vmlinux` (format:
//! `Documentation/bpf/btf.rst`). aya parses BTF too, but does not expose
//! struct members.

use std::path::Path;

/// `BTF_KIND_STRUCT`.
pub(crate) const KIND_STRUCT: u32 = 4;
/// `BTF_KIND_FUNC`.
pub(crate) const KIND_FUNC: u32 = 12;

const MAGIC: u16 = 0xeb9f;

/// A parsed BTF blob (little-endian hosts only, like the rest of the daemon).
pub(crate) struct Btf {
    data: Vec<u8>,
    /// Start of the string section in `data`.
    strings: usize,
    /// Byte offset in `data` of each type; index 0 is type id 1.
    types: Vec<usize>,
}

/// Malformed or unexpected BTF.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BtfError(String);

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| BtfError(format!("truncated at byte {at}")))
}

impl Btf {
    /// Reads and parses the kernel's own BTF.
    pub(crate) fn vmlinux() -> Result<Self, BtfError> {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        let data = std::fs::read(path).map_err(|e| BtfError(format!("{}: {e}", path.display())))?;
        Self::parse(data)
    }

    /// Parses a raw BTF blob.
    pub(crate) fn parse(data: Vec<u8>) -> Result<Self, BtfError> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError("not little-endian BTF".into()));
        }
        let hdr_len = u32_at(&data, 4)? as usize;
        let type_off = hdr_len + u32_at(&data, 8)? as usize;
        let type_len = u32_at(&data, 12)? as usize;
        let strings = hdr_len + u32_at(&data, 16)? as usize;
        let end = type_off + type_len;
        if end > data.len() || strings > data.len() {
            return Err(BtfError("section offsets outside the blob".into()));
        }
        let mut types = Vec::new();
        let mut at = type_off;
        while at < end {
            types.push(at);
            let info = u32_at(&data, at + 4)?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let extra = match kind {
                1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
                3 => 12,                      // ARRAY
                4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
                6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
                2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
                _ => return Err(BtfError(format!("unknown BTF kind {kind} at byte {at}"))),
            };
            at += 12 + extra;
        }
        Ok(Self {
            data,
            strings,
            types,
        })
    }

    fn name(&self, name_off: u32) -> &[u8] {
        let start = self.strings + name_off as usize;
        let rest = self.data.get(start..).unwrap_or_default();
        &rest[..rest.iter().position(|b| *b == 0).unwrap_or(rest.len())]
    }

    /// Id of the first type named `name` of kind `kind`.
    pub(crate) fn find(&self, name: &str, kind: u32) -> Option<u32> {
        self.types.iter().enumerate().find_map(|(i, &at)| {
            let info = u32_at(&self.data, at + 4).ok()?;
            ((info >> 24) & 0x1f == kind
                && self.name(u32_at(&self.data, at).ok()?) == name.as_bytes())
            .then_some(i as u32 + 1)
        })
    }

    /// Byte offset of `member` in the struct with id `id`.
    pub(crate) fn member_offset(&self, id: u32, member: &str) -> Option<u32> {
        let at = *self.types.get((id as usize).checked_sub(1)?)?;
        let info = u32_at(&self.data, at + 4).ok()?;
        if (info >> 24) & 0x1f != KIND_STRUCT {
            return None;
        }
        let kind_flag = info >> 31 == 1;
        (0..(info & 0xffff) as usize).find_map(|m| {
            let m_at = at + 12 + 12 * m;
            if self.name(u32_at(&self.data, m_at).ok()?) != member.as_bytes() {
                return None;
            }
            let offset = u32_at(&self.data, m_at + 8).ok()?;
            // With kind_flag the top 8 bits are a bitfield size.
            let bits = if kind_flag {
                offset & 0x00ff_ffff
            } else {
                offset
            };
            (bits % 8 == 0).then_some(bits / 8)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made blob: `struct s { int a; int b; }` and `void f(void)`.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0s\0a\0b\0f\0fp\0";
        let mut types = Vec::new();
        let mut t = |words: &[u32]| {
            words
                .iter()
                .for_each(|w| types.extend_from_slice(&w.to_le_bytes()))
        };
        t(&[1, 1 << 24, 4, 32]); // [1] INT "int", size 4, 32 bits
        t(&[5, (4 << 24) | 2, 8, 7, 1, 0, 9, 1, 32]); // [2] STRUCT "s" {a @0, b @32 bits}
        t(&[13, 13 << 24, 0]); // [3] FUNC_PROTO "fp", no params
        t(&[11, 12 << 24, 3]); // [4] FUNC "f"
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&types);
        b.extend_from_slice(strings);
        b
    }

    #[test]
    fn finds_types_and_members() {
        let btf = Btf::parse(blob()).unwrap();
        assert_eq!(btf.find("s", KIND_STRUCT), Some(2));
        assert_eq!(btf.find("f", KIND_FUNC), Some(4));
        assert_eq!(btf.find("s", KIND_FUNC), None);
        assert_eq!(btf.member_offset(2, "a"), Some(0));
        assert_eq!(btf.member_offset(2, "b"), Some(4));
        assert_eq!(btf.member_offset(2, "c"), None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(vec![0; 8]).is_err());
    }

    #[test]
    fn reads_this_kernels_btf() {
        if !Path::new("/sys/kernel/btf/vmlinux").exists() {
            return;
        }
        let btf = Btf::vmlinux().unwrap();
        let sun = btf.find("sockaddr_un", KIND_STRUCT).unwrap();
        assert_eq!(btf.member_offset(sun, "sun_path"), Some(2));
        assert!(btf.find("bpf_cast_to_kern_ctx", KIND_FUNC).is_some());
    }
}
