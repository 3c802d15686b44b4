//! The snapshot file: magic, revision, keys and leases, written atomically.

use super::*;
use crate::state::{Lease, State};

pub(crate) fn encode_snapshot(st: &State) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + st.kvs.len() * 64);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&st.revision.to_le_bytes());
    out.extend_from_slice(&st.revision.to_le_bytes()); // compact revision after restart
    out.extend_from_slice(&st.next_lease.to_le_bytes());
    out.extend_from_slice(&(st.leases.len() as u64).to_le_bytes());
    for (id, lease) in &st.leases {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&lease.ttl.to_le_bytes());
    }
    for kv in st.kvs.values() {
        // encode_length_delimited into a Vec cannot fail for lack of space.
        let _ = kv.encode_length_delimited(&mut out);
    }
    out
}

pub(crate) fn decode_snapshot(bytes: &[u8]) -> Result<State, String> {
    fn take_i64(buf: &mut &[u8]) -> Result<i64, String> {
        if buf.len() < 8 {
            return Err("truncated header".into());
        }
        let (head, rest) = buf.split_at(8);
        *buf = rest;
        let mut a = [0u8; 8];
        a.copy_from_slice(head);
        Ok(i64::from_le_bytes(a))
    }
    let mut buf = bytes
        .strip_prefix(SNAPSHOT_MAGIC.as_slice())
        .ok_or("not a Shoal store snapshot")?;
    let mut st = State {
        revision: take_i64(&mut buf)?,
        compact_revision: take_i64(&mut buf)?,
        next_lease: take_i64(&mut buf)?,
        ..Default::default()
    };
    let nleases = take_i64(&mut buf)?;
    for _ in 0..nleases {
        let id = take_i64(&mut buf)?;
        let ttl = take_i64(&mut buf)?;
        st.leases.insert(
            id,
            Lease {
                ttl,
                deadline: Instant::now() + Duration::from_secs(ttl.max(MIN_TTL) as u64),
                keys: BTreeSet::new(),
            },
        );
    }
    while !buf.is_empty() {
        let kv = PbKeyValue::decode_length_delimited(&mut buf).map_err(|e| e.to_string())?;
        if kv.lease != 0 {
            match st.leases.get_mut(&kv.lease) {
                Some(l) => {
                    l.keys.insert(kv.key.clone());
                }
                // A key whose lease is gone would never expire: drop it.
                None => continue,
            }
        }
        st.kvs.insert(kv.key.clone(), kv);
    }
    Ok(st)
}
