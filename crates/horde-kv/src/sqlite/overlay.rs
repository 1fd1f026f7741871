//! A transaction's own writes, so that its reads see them (read-your-writes), and the list of
//! mutations it will commit, in the order they were made.

use std::collections::BTreeMap;
use std::ops::Bound;

/// What this transaction did to one key, as far as reads can tell.
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    Set(Vec<u8>),
    Clear,
    /// Atomic adds onto a base value this transaction has not seen (read from the store).
    Add(Vec<Vec<u8>>),
    /// Set with a versionstamped value: unknown until commit.
    Unreadable,
}

impl Pending {
    /// The value a reader sees, given the stored base value.
    pub(crate) fn resolve(&self, base: Option<&[u8]>) -> Result<Option<Vec<u8>>, crate::KvError> {
        match self {
            Pending::Set(v) => Ok(Some(v.clone())),
            Pending::Clear => Ok(None),
            Pending::Add(params) => {
                let mut value = base.map(<[u8]>::to_vec).unwrap_or_default();
                for p in params {
                    value = add_le(&value, p);
                }
                Ok(Some(value))
            }
            Pending::Unreadable => Err(crate::KvError::AccessedUnreadable),
        }
    }
}

/// FoundationDB's atomic add: both sides as little-endian integers of `param`'s width.
pub(crate) fn add_le(existing: &[u8], param: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(param.len());
    let mut carry = 0u16;
    for (i, &p) in param.iter().enumerate() {
        let e = existing.get(i).copied().unwrap_or(0);
        let sum = u16::from(e) + u16::from(p) + carry;
        out.push((sum & 0xff) as u8);
        carry = sum >> 8;
    }
    out
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Overlay {
    writes: BTreeMap<Vec<u8>, Pending>,
    /// Ranges cleared by `clear_range`, sorted, disjoint; `writes` made later win.
    cleared: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What a read of one key needs.
pub(crate) enum Lookup {
    /// Known without reading the store.
    Known(Option<Vec<u8>>),
    /// Read the store, then apply this (if any).
    Store(Option<Pending>),
}

impl Overlay {
    pub(crate) fn set(&mut self, key: &[u8], value: &[u8]) {
        self.writes
            .insert(key.to_vec(), Pending::Set(value.to_vec()));
    }

    pub(crate) fn clear(&mut self, key: &[u8]) {
        self.writes.insert(key.to_vec(), Pending::Clear);
    }

    pub(crate) fn unreadable(&mut self, key: &[u8]) {
        self.writes.insert(key.to_vec(), Pending::Unreadable);
    }

    pub(crate) fn add(&mut self, key: &[u8], param: &[u8]) {
        let cleared = self.is_cleared(key);
        let next = match self.writes.get_mut(key) {
            Some(Pending::Set(v)) => Pending::Set(add_le(v, param)),
            Some(Pending::Clear) => Pending::Set(add_le(&[], param)),
            Some(Pending::Add(params)) => {
                params.push(param.to_vec());
                return;
            }
            Some(Pending::Unreadable) => return,
            None if cleared => Pending::Set(add_le(&[], param)),
            None => Pending::Add(vec![param.to_vec()]),
        };
        self.writes.insert(key.to_vec(), next);
    }

    pub(crate) fn clear_range(&mut self, begin: &[u8], end: &[u8]) {
        if begin >= end {
            return;
        }
        let mut tail = self.writes.split_off(begin);
        let mut after = tail.split_off(end);
        self.writes.append(&mut after);
        // Merge [begin, end) into the sorted, disjoint list.
        let (mut b, mut e) = (begin.to_vec(), end.to_vec());
        let mut kept = Vec::with_capacity(self.cleared.len() + 1);
        for (cb, ce) in self.cleared.drain(..) {
            if ce < b || cb > e {
                kept.push((cb, ce));
            } else {
                b = b.min(cb);
                e = e.max(ce);
            }
        }
        kept.push((b, e));
        kept.sort();
        self.cleared = kept;
    }

    pub(crate) fn is_cleared(&self, key: &[u8]) -> bool {
        let i = self.cleared.partition_point(|(_, e)| e.as_slice() <= key);
        self.cleared
            .get(i)
            .is_some_and(|(b, _)| b.as_slice() <= key)
    }

    pub(crate) fn lookup(&self, key: &[u8]) -> Lookup {
        match self.writes.get(key) {
            Some(Pending::Add(p)) if !self.is_cleared(key) => {
                Lookup::Store(Some(Pending::Add(p.clone())))
            }
            Some(p) => match p.resolve(None) {
                Ok(v) => Lookup::Known(v),
                Err(_) => Lookup::Store(Some(Pending::Unreadable)),
            },
            None if self.is_cleared(key) => Lookup::Known(None),
            None => Lookup::Store(None),
        }
    }

    /// This transaction's writes within `(lo, hi)`, in key order.
    pub(crate) fn range<'a>(
        &'a self,
        lo: Bound<&'a [u8]>,
        hi: Bound<&'a [u8]>,
    ) -> Box<dyn DoubleEndedIterator<Item = (&'a Vec<u8>, &'a Pending)> + 'a> {
        if range_is_empty(lo, hi) {
            Box::new(std::iter::empty())
        } else {
            Box::new(self.writes.range::<[u8], _>((lo, hi)))
        }
    }
}

fn range_is_empty(lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_is_little_endian_with_carry_and_param_width() {
        assert_eq!(add_le(&[0xff, 0x00], &[0x01, 0x00]), vec![0x00, 0x01]);
        assert_eq!(add_le(&[], &[5, 0, 0, 0]), vec![5, 0, 0, 0]);
        // The result is as wide as the parameter: a longer value is truncated.
        assert_eq!(add_le(&[1, 2, 3], &[1]), vec![2]);
        // Overflow wraps.
        assert_eq!(add_le(&[0xff], &[0x01]), vec![0x00]);
    }

    #[test]
    fn clear_range_hides_earlier_writes_and_merges() {
        let mut o = Overlay::default();
        o.set(b"b", b"1");
        o.set(b"d", b"2");
        o.clear_range(b"a", b"c");
        o.clear_range(b"c", b"e");
        assert!(matches!(o.lookup(b"b"), Lookup::Known(None)));
        assert!(matches!(o.lookup(b"d"), Lookup::Known(None)));
        assert!(matches!(o.lookup(b"e"), Lookup::Store(None)));
        assert_eq!(o.cleared, vec![(b"a".to_vec(), b"e".to_vec())]);
        o.set(b"c", b"3");
        assert!(matches!(o.lookup(b"c"), Lookup::Known(Some(ref v)) if v == b"3"));
        o.add(b"b", &[7]);
        assert!(matches!(o.lookup(b"b"), Lookup::Known(Some(ref v)) if v == &[7]));
    }
}
