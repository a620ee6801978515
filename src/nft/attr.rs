//! Netlink attributes (TLVs): a writer that lays them out exactly as libmnl does, and a
//! bounds-checked reader for what the kernel sends back.

use super::NlError;

/// Flag the kernel expects on every attribute that holds other attributes.
pub const NLA_F_NESTED: u16 = 0x8000;
/// Bits of `nla_type` that are flags, not the type.
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | 0x4000);

/// Rounds a length up to netlink's 4-byte alignment.
pub fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Appends attributes to a message buffer. `nla_len` excludes the attribute's own trailing
/// padding; a nest's length includes its children's padding (libmnl's `mnl_attr_nest_end`).
#[derive(Debug, Default)]
pub struct AttrWriter {
    buf: Vec<u8>,
}

impl AttrWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn put_bytes(&mut self, ty: u16, payload: &[u8]) -> &mut Self {
        let len = 4 + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    pub fn put_be16(&mut self, ty: u16, v: u16) -> &mut Self {
        self.put_bytes(ty, &v.to_be_bytes())
    }

    pub fn put_be32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.put_bytes(ty, &v.to_be_bytes())
    }

    pub fn put_be64(&mut self, ty: u16, v: u64) -> &mut Self {
        self.put_bytes(ty, &v.to_be_bytes())
    }

    /// A string with its trailing NUL counted in `nla_len`, as libnftnl sends every string
    /// (and as the kernel demands for `NLA_NUL_STRING` attributes such as `NFTA_MATCH_NAME`).
    pub fn put_strz(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut payload = Vec::with_capacity(s.len() + 1);
        payload.extend_from_slice(s.as_bytes());
        payload.push(0);
        self.put_bytes(ty, &payload)
    }

    /// A nested attribute whose children `fill` writes.
    pub fn nest(&mut self, ty: u16, fill: impl FnOnce(&mut Self)) -> &mut Self {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        fill(self);
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn pad(&mut self) {
        let padded = align4(self.buf.len());
        self.buf.resize(padded, 0);
    }
}

/// One attribute read from a buffer: its type without flag bits, and its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    pub ty: u16,
    pub payload: &'a [u8],
}

impl<'a> Attr<'a> {
    pub fn be16(&self) -> Result<u16, NlError> {
        Ok(u16::from_be_bytes(self.fixed::<2>()?))
    }

    pub fn be32(&self) -> Result<u32, NlError> {
        Ok(u32::from_be_bytes(self.fixed::<4>()?))
    }

    pub fn be64(&self) -> Result<u64, NlError> {
        Ok(u64::from_be_bytes(self.fixed::<8>()?))
    }

    /// A string attribute; a trailing NUL (and anything after it) is not part of the value.
    pub fn string(&self) -> Result<String, NlError> {
        let end = self.payload.iter().position(|&b| b == 0).unwrap_or(self.payload.len());
        String::from_utf8(self.payload[..end].to_vec()).map_err(|_| NlError::Malformed("attribute string is not UTF-8"))
    }

    pub fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.payload)
    }

    fn fixed<const N: usize>(&self) -> Result<[u8; N], NlError> {
        self.payload.try_into().map_err(|_| NlError::Malformed("attribute has an unexpected length"))
    }
}

/// Iterates over the attributes in a buffer; a truncated attribute yields an error and ends
/// the iteration rather than reading past the buffer.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, NlError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([self.rest[0], self.rest[1]]) as usize;
        let ty = u16::from_ne_bytes([self.rest[2], self.rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > self.rest.len() {
            self.rest = &[];
            return Some(Err(NlError::Malformed("attribute length out of bounds")));
        }
        let payload = &self.rest[4..len];
        self.rest = &self.rest[align4(len).min(self.rest.len())..];
        Some(Ok(Attr { ty, payload }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_counts_its_nul_and_pads() {
        // iptables: NFTA_RULE_TABLE "filter" → 0b 00 01 00 "filter\0" + 1 pad byte
        let mut w = AttrWriter::new();
        w.put_strz(1, "filter");
        assert_eq!(w.into_bytes(), b"\x0b\x00\x01\x00filter\x00\x00");
    }

    #[test]
    fn nest_length_covers_padded_children() {
        // iptables: NFTA_RULE_COMPAT{PROTO 0, FLAGS 0} → 14 00 05 80 | 08 00 01 00 0.. | 08 00 02 00 0..
        let mut w = AttrWriter::new();
        w.nest(5, |w| {
            w.put_be32(1, 0).put_be32(2, 0);
        });
        assert_eq!(w.into_bytes(), [0x14, 0, 0x05, 0x80, 8, 0, 1, 0, 0, 0, 0, 0, 8, 0, 2, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn reader_round_trips_and_strips_flags() {
        let mut w = AttrWriter::new();
        w.put_strz(1, "DOCKER-USER").nest(4, |w| {
            w.put_be64(2, 7);
        });
        let buf = w.into_bytes();
        let attrs: Vec<_> = Attrs::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(attrs[0].ty, 1);
        assert_eq!(attrs[0].string().unwrap(), "DOCKER-USER");
        assert_eq!(attrs[1].ty, 4);
        let inner: Vec<_> = attrs[1].nested().collect::<Result<_, _>>().unwrap();
        assert_eq!(inner[0].be64().unwrap(), 7);
    }

    #[test]
    fn reader_rejects_truncated_attribute() {
        let buf = [0x10, 0, 1, 0, 1, 2];
        let mut it = Attrs::new(&buf);
        assert!(matches!(it.next(), Some(Err(NlError::Malformed(_)))));
        assert!(it.next().is_none());
    }
}
