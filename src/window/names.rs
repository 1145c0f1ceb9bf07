//! Backend names interned per pool: a name is stored once, on first sight, and every later
//! line finds its dense index without allocating.

use std::sync::Arc;

use rustc_hash::FxHashMap;

/// The backend that requests beyond a pool's backend cap are counted under. It is never
/// judged: it is not a server.
pub const OVERFLOW_BACKEND: &str = "_overflow";

/// One pool's backend names.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct PoolNames {
    /// Name → index; rebuilt from `names` after a restore.
    #[serde(skip)]
    index: FxHashMap<Name, u32>,
    /// Index → name; `None` for a forgotten backend whose index is free.
    pub(super) names: Vec<Option<Arc<str>>>,
    /// Index → start of the newest window it has requests in, ms.
    pub(super) last_served_ms: Vec<i64>,
    /// Indexes of forgotten backends, to reuse.
    pub(super) free: Vec<u32>,
    /// The overflow backend's index, once the cap was reached.
    pub(super) overflow: Option<u32>,
    /// Backends known now (the overflow one excluded).
    pub(super) active: usize,
}

impl PoolNames {
    pub(super) fn intern(&mut self, name: &[u8], max_backends: usize) -> (u32, bool) {
        if let Some(&index) = self.index.get(name) {
            return (index, false);
        }
        if self.active >= max_backends {
            if let Some(index) = self.overflow {
                return (index, false);
            }
            let index = self.add(OVERFLOW_BACKEND.as_bytes());
            self.overflow = Some(index);
            return (index, true);
        }
        self.active += 1;
        (self.add(name), false)
    }

    pub(super) fn add(&mut self, name: &[u8]) -> u32 {
        let text: Arc<str> = String::from_utf8_lossy(name).into();
        let index = match self.free.pop() {
            Some(index) => {
                self.names[index as usize] = Some(text);
                self.last_served_ms[index as usize] = i64::MIN;
                index
            }
            None => {
                self.names.push(Some(text));
                self.last_served_ms.push(i64::MIN);
                #[allow(clippy::cast_possible_truncation)] // capped far below 2^32
                let index = (self.names.len() - 1) as u32;
                index
            }
        };
        self.index.insert(Name::new(name), index);
        index
    }

    /// Forgets backends that have not served since `before_ms`; returns how many.
    pub(super) fn forget_before(&mut self, before_ms: i64) -> u64 {
        let mut forgotten = 0;
        for (index, name) in self.names.iter_mut().enumerate() {
            #[allow(clippy::cast_possible_truncation)] // capped far below 2^32
            let index32 = index as u32;
            if self.overflow == Some(index32) || self.last_served_ms[index] >= before_ms {
                continue;
            }
            if let Some(text) = name.take() {
                self.index.remove(text.as_bytes());
                self.free.push(index32);
                self.active -= 1;
                forgotten += 1;
            }
        }
        forgotten
    }

    pub(super) fn rebuild_index(&mut self) {
        self.index = self
            .names
            .iter()
            .enumerate()
            .filter_map(|(index, name)| {
                #[allow(clippy::cast_possible_truncation)] // capped far below 2^32
                Some((Name::new(name.as_ref()?.as_bytes()), index as u32))
            })
            .collect();
    }
}

/// A backend name as a hash-map key, kept inside the table when it is short (as addresses
/// are): a lookup then compares bytes it already has in cache instead of following a pointer,
/// which is most of a lookup's cost in a pool of 100,000 backends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    Inline { len: u8, bytes: [u8; Name::INLINE] },
    Heap(Box<[u8]>),
}

impl Name {
    const INLINE: usize = 30;

    pub(super) fn new(name: &[u8]) -> Self {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= Self::INLINE => {
                let mut bytes = [0; Self::INLINE];
                bytes[..name.len()].copy_from_slice(name);
                Name::Inline { len, bytes }
            }
            _ => Name::Heap(name.into()),
        }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Name::Heap(bytes) => bytes,
        }
    }
}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As the byte slice hashes, so that lookups by `&[u8]` find it.
        self.as_bytes().hash(state);
    }
}

impl std::borrow::Borrow<[u8]> for Name {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// A pool and backend resolved to dense indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub(super) pool: u32,
    pub(super) backend: Option<u32>,
}

impl Slot {
    /// The pool's index.
    pub fn pool(self) -> u32 {
        self.pool
    }
}
