//! FNV-1a, 64 bits: the digests egress-guard keeps in the kernel (of the sets' content, of
//! `apply`'s input). Stable across builds and Rust versions, which std's hasher does not
//! promise; not a defence against anyone (every comparison that matters reads the kernel).

/// Hashes `chunks`, each with its length first, so `["ab", "c"]` and `["a", "bc"]` differ.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn eat(&mut self, bytes: &[u8]) -> &mut Self {
        for b in (bytes.len() as u32).to_be_bytes().iter().chain(bytes) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_keep_chunks_apart_and_the_value_is_fixed() {
        let h = |chunks: &[&str]| chunks.iter().fold(Fnv::default(), |mut f, c| *f.eat(c.as_bytes())).finish();
        assert_ne!(h(&["ab", "c"]), h(&["a", "bc"]));
        // The kernel keeps these across upgrades: the function must never change.
        assert_eq!(h(&[]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(h(&["egress-guard"]), h(&["egress-guard"]));
        assert_eq!(format!("{:016x}", h(&["a"])), format!("{:016x}", h(&["a"])));
    }
}
