//! An insertion-ordered map with Python dict semantics (what the JSON bytes follow):
//! `insert` of a present key replaces its value in place, of a new key appends it; `shift_remove`
//! keeps the order of the others (a key inserted again then goes to the end, as after `del d[k]`).
//!
//! Most maps here are small (a row's fields, {"from", "to"}, a state's top level): entries in a
//! Vec, found by a linear scan, beat hashing. Past INDEX_FROM entries (a large aggregate's
//! children) a hash index from key to position is kept as well.

use std::collections::HashMap;
use std::rc::Rc;

pub type Key = Rc<str>;
type Hasher = foldhash::fast::RandomState;

const INDEX_FROM: usize = 12;

#[derive(Clone, Debug)]
pub struct OMap<V> {
    entries: Vec<(Key, V)>,
    index: Option<Box<HashMap<Key, usize, Hasher>>>,
}

impl<V> Default for OMap<V> {
    fn default() -> Self {
        OMap::new()
    }
}

impl<V> OMap<V> {
    #[inline]
    pub fn new() -> Self {
        OMap { entries: Vec::new(), index: None }
    }

    #[inline]
    pub fn with_capacity(n: usize) -> Self {
        OMap { entries: Vec::with_capacity(n), index: None }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[inline]
    fn find(&self, k: &str) -> Option<usize> {
        match &self.index {
            Some(ix) => ix.get(k).copied(),
            None => self
                .entries
                .iter()
                .position(|(ek, _)| std::ptr::eq(ek.as_ptr(), k.as_ptr()) || (ek.len() == k.len() && **ek == *k)),
        }
    }

    fn build_index(&mut self) {
        let mut ix = HashMap::with_capacity_and_hasher(self.entries.len() * 2, Hasher::default());
        for (i, (k, _)) in self.entries.iter().enumerate() {
            ix.insert(k.clone(), i);
        }
        self.index = Some(Box::new(ix));
    }

    #[inline]
    pub fn get(&self, k: &str) -> Option<&V> {
        self.find(k).map(|i| &self.entries[i].1)
    }

    #[inline]
    pub fn get_mut(&mut self, k: &str) -> Option<&mut V> {
        self.find(k).map(move |i| &mut self.entries[i].1)
    }

    #[inline]
    pub fn contains_key(&self, k: &str) -> bool {
        self.find(k).is_some()
    }

    /// d[k] = v: in place when k is there (the old value returned), else appended.
    pub fn insert(&mut self, k: Key, v: V) -> Option<V> {
        if let Some(i) = self.find(&k) {
            return Some(std::mem::replace(&mut self.entries[i].1, v));
        }
        self.push_new(k, v);
        None
    }

    /// Appends a key known to be absent.
    fn push_new(&mut self, k: Key, v: V) {
        let at = self.entries.len();
        if let Some(ix) = &mut self.index {
            ix.insert(k.clone(), at);
        }
        self.entries.push((k, v));
        if self.index.is_none() && self.entries.len() > INDEX_FROM {
            self.build_index();
        }
    }

    /// d.setdefault(k, f()) as a mutable reference.
    pub fn get_or_insert_with(&mut self, k: &Key, f: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(k) {
            Some(i) => i,
            None => {
                self.push_new(k.clone(), f());
                self.entries.len() - 1
            }
        };
        &mut self.entries[i].1
    }

    /// d.pop(k, None), the others keeping their order.
    pub fn shift_remove(&mut self, k: &str) -> Option<V> {
        let i = self.find(k)?;
        let (_, v) = self.entries.remove(i);
        if let Some(ix) = &mut self.index {
            ix.remove(k);
            for (j, (ek, _)) in self.entries.iter().enumerate().skip(i) {
                *ix.get_mut(&**ek).expect("indexed") = j;
            }
        }
        Some(v)
    }

    #[inline]
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Key, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    #[inline]
    pub fn values(&self) -> impl ExactSizeIterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }
}

impl<V> std::ops::Index<&str> for OMap<V> {
    type Output = V;

    fn index(&self, k: &str) -> &V {
        self.get(k).expect("key present")
    }
}

impl<'a, V> IntoIterator for &'a OMap<V> {
    type Item = (&'a Key, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (Key, V)>, fn(&'a (Key, V)) -> (&'a Key, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}
