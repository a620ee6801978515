//! A chain's definition read back (GETCHAIN): for a base chain, its hook, priority, type and
//! policy. Chains themselves are written with rustables (see `rustables_bridge`).

use super::msg::Reply;
use super::sys::*;
use super::NlError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDef {
    pub name: String,
    /// Hook number and priority; `None` for a regular (non-base) chain.
    pub hook: Option<(u32, i32)>,
    pub ty: Option<String>,
    /// `NF_ACCEPT` or `NF_DROP`, for base chains.
    pub policy: Option<u32>,
}

impl ChainDef {
    /// Reads a NEWCHAIN message (the answer to GETCHAIN).
    pub fn decode(reply: &Reply<'_>) -> Result<ChainDef, NlError> {
        let mut def = ChainDef { name: String::new(), hook: None, ty: None, policy: None };
        for attr in reply.attrs() {
            let attr = attr?;
            match attr.ty {
                NFTA_CHAIN_NAME => def.name = attr.string()?,
                NFTA_CHAIN_TYPE => def.ty = Some(attr.string()?),
                NFTA_CHAIN_POLICY => def.policy = Some(attr.be32()?),
                NFTA_CHAIN_HOOK => {
                    let (mut num, mut prio) = (None, None);
                    for a in attr.nested() {
                        let a = a?;
                        match a.ty {
                            NFTA_HOOK_HOOKNUM => num = Some(a.be32()?),
                            NFTA_HOOK_PRIORITY => prio = Some(a.be32()? as i32),
                            _ => {}
                        }
                    }
                    def.hook = num.zip(prio);
                }
                _ => {}
            }
        }
        Ok(def)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::hex;
    use crate::nft::msg::parse;

    #[test]
    fn reads_a_base_chain() {
        // What nft 1.0.6 sent for `chain forward { type filter hook forward priority filter - 1;
        // policy accept; }` in `table inet egress_guard` (the kernel's dump has the same
        // attributes plus handle and use): TABLE | NAME "forward" | TYPE "filter" | POLICY 1 |
        // HOOK { HOOKNUM 2, PRIORITY -1 }
        let msg = hex("5c 00 00 00 03 0a 01 04 02 00 00 00 00 00 00 00 01 00 00 00 11 00 01 00 65 67 72 65 \
             73 73 5f 67 75 61 72 64 00 00 00 00 0c 00 03 00 66 6f 72 77 61 72 64 00 0b 00 07 00 66 69 6c 74 \
             65 72 00 00 08 00 05 00 00 00 00 01 14 00 04 80 08 00 01 00 00 00 00 02 08 00 02 00 ff ff ff ff");
        let def = ChainDef::decode(&parse(&msg).unwrap()[0]).unwrap();
        assert_eq!(
            def,
            ChainDef {
                name: "forward".into(),
                hook: Some((NF_INET_FORWARD, -1)),
                ty: Some("filter".into()),
                policy: Some(NF_ACCEPT as u32)
            }
        );
    }
}
