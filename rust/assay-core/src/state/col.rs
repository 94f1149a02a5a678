//! A column of plain numbers that either owns its memory or borrows it from the bytes a state
//! was read from ([`PartialState::from_shared_bytes`](super::partial::PartialState)): a state
//! read back from `to_bytes` then holds its kept rows where they lie (no copy, no fresh pages),
//! and reading it is reading those bytes. Writing to a borrowed column copies it first.

use std::any::Any;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// Bytes that stay where they are, unchanged, for as long as the value lives (a Python `bytes`
/// object, a `Vec<u8>` that is never written again, a read-only mapping).
///
/// # Safety
/// [`StableBytes::stable_bytes`] must return the same memory, with the same contents, on every
/// call, for as long as `self` is alive; columns keep raw pointers into it.
pub unsafe trait StableBytes: Send + Sync + 'static {
    fn stable_bytes(&self) -> &[u8];
}

// SAFETY: a `Vec<u8>` behind an `Arc` (how [`Col`] holds its owner) cannot be written or moved.
unsafe impl StableBytes for Vec<u8> {
    fn stable_bytes(&self) -> &[u8] {
        self
    }
}

// SAFETY: as for `Vec<u8>`.
unsafe impl StableBytes for Box<[u8]> {
    fn stable_bytes(&self) -> &[u8] {
        self
    }
}

/// What keeps a borrowed column's memory alive.
pub type Owner = Arc<dyn Any + Send + Sync>;

/// Numbers whose every bit pattern is a valid value, without padding (what a column may hold).
///
/// # Safety
/// Any `size_of::<Self>()` initialized bytes must be a valid `Self`.
pub unsafe trait Plain: Copy + Send + Sync + 'static {}
// SAFETY: plain numbers: every bit pattern is a value.
unsafe impl Plain for f64 {}
// SAFETY: as above.
unsafe impl Plain for u64 {}
// SAFETY: as above.
unsafe impl Plain for u32 {}
// SAFETY: as above.
unsafe impl Plain for u8 {}

pub enum Col<T> {
    Owned(Vec<T>),
    /// `len` items at `ptr`, inside memory that `owner` keeps alive and unchanged.
    Shared {
        owner: Owner,
        ptr: *const T,
        len: usize,
    },
}

// SAFETY: a shared column only reads memory that its owner (Send + Sync) keeps alive and never
// changes; an owned one is a `Vec<T>`.
unsafe impl<T: Send + Sync> Send for Col<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Col<T> {}

impl<T: Plain> Col<T> {
    /// The little-endian column of `bytes` (a multiple of the item size), borrowed from them
    /// where that is sound (a little-endian target and aligned bytes), copied otherwise.
    ///
    /// # Safety
    /// `bytes` must lie inside the memory that `owner` keeps alive and unchanged.
    pub unsafe fn borrow_or_copy(
        bytes: &[u8],
        owner: Option<&Owner>,
        read: impl Fn(&[u8]) -> T,
    ) -> Col<T> {
        let size = std::mem::size_of::<T>();
        let n = bytes.len() / size;
        let aligned = bytes.as_ptr().align_offset(std::mem::align_of::<T>()) == 0;
        match owner {
            Some(owner) if cfg!(target_endian = "little") && aligned && n > 0 => Col::Shared {
                owner: owner.clone(),
                ptr: bytes.as_ptr() as *const T,
                len: n,
            },
            _ if cfg!(target_endian = "little") => {
                let mut v: Vec<T> = crate::runtime::big_vec(n);
                // SAFETY: T is plain (every bit pattern valid); the source holds n items'
                // bytes and the vector room for n items; they do not overlap.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        v.as_mut_ptr() as *mut u8,
                        n * size,
                    );
                    v.set_len(n);
                }
                Col::Owned(v)
            }
            _ => Col::Owned(bytes.chunks_exact(size).map(read).collect()),
        }
    }
}

impl<T: Copy> Col<T> {
    /// The column as a vector to write to: a borrowed column is copied first.
    pub fn to_mut(&mut self) -> &mut Vec<T> {
        if let Col::Shared { .. } = self {
            let v = self.as_slice().to_vec();
            *self = Col::Owned(v);
        }
        match self {
            Col::Owned(v) => v,
            Col::Shared { .. } => unreachable!("made owned above"),
        }
    }

    /// The column as a vector (a borrowed one copied).
    pub fn into_vec(self) -> Vec<T> {
        match self {
            Col::Owned(v) => v,
            shared => shared.as_slice().to_vec(),
        }
    }

    pub fn as_slice(&self) -> &[T] {
        match self {
            Col::Owned(v) => v,
            // SAFETY: `ptr` and `len` were taken from memory that `owner` keeps alive and
            // unchanged, aligned for T (see `borrow_or_copy`).
            Col::Shared { ptr, len, .. } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }

    /// Whether the column borrows its memory.
    pub fn is_shared(&self) -> bool {
        matches!(self, Col::Shared { .. })
    }

    /// Bytes of memory the column owns (a borrowed one owns none).
    pub fn owned_bytes(&self) -> usize {
        match self {
            Col::Owned(v) => v.capacity() * std::mem::size_of::<T>(),
            Col::Shared { .. } => 0,
        }
    }

    pub fn push(&mut self, x: T) {
        self.to_mut().push(x)
    }

    pub fn extend_from_slice(&mut self, xs: &[T]) {
        self.to_mut().extend_from_slice(xs)
    }

    pub fn reserve(&mut self, more: usize) {
        self.to_mut().reserve(more)
    }

    pub fn truncate(&mut self, len: usize) {
        self.to_mut().truncate(len)
    }

    pub fn drain<R: std::ops::RangeBounds<usize>>(&mut self, range: R) -> std::vec::Drain<'_, T> {
        self.to_mut().drain(range)
    }

    pub fn clear(&mut self) {
        *self = Col::Owned(Vec::new());
    }
}

impl<T> Default for Col<T> {
    fn default() -> Self {
        Col::Owned(Vec::new())
    }
}

impl<T> From<Vec<T>> for Col<T> {
    fn from(v: Vec<T>) -> Self {
        Col::Owned(v)
    }
}

impl<T: Copy> Clone for Col<T> {
    /// A borrowed column's clone borrows the same memory.
    fn clone(&self) -> Self {
        match self {
            Col::Owned(v) => Col::Owned(v.clone()),
            Col::Shared { owner, ptr, len } => Col::Shared {
                owner: owner.clone(),
                ptr: *ptr,
                len: *len,
            },
        }
    }
}

impl<T: Copy> Deref for Col<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Copy> DerefMut for Col<T> {
    /// Writing to a borrowed column copies it first.
    fn deref_mut(&mut self) -> &mut [T] {
        self.to_mut()
    }
}

impl<T: Copy + fmt::Debug> fmt::Debug for Col<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_slice(), f)
    }
}

impl<T: Copy + PartialEq> PartialEq for Col<T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Copy + PartialEq> PartialEq<Vec<T>> for Col<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Copy> Extend<T> for Col<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        self.to_mut().extend(iter)
    }
}

impl<T: Copy> FromIterator<T> for Col<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Col::Owned(iter.into_iter().collect())
    }
}

impl<'a, T: Copy> IntoIterator for &'a Col<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_column_reads_its_bytes_and_copies_before_a_write() {
        let xs: Vec<f64> = vec![1.5, -2.0, 3.25];
        let bytes: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
        let keep: Arc<Vec<u8>> = Arc::new(bytes);
        let owner: Owner = keep.clone();
        let b = keep.stable_bytes();
        // SAFETY: `b` lies in `keep`, which `owner` keeps alive.
        let mut col = unsafe {
            Col::<f64>::borrow_or_copy(b, Some(&owner), |c| {
                f64::from_le_bytes(c.try_into().unwrap())
            })
        };
        // A Vec<u8> of 24 bytes is aligned for f64 by the global allocator in practice; if
        // not, the column was copied, which is also correct.
        assert_eq!(&col[..], &xs[..]);
        let copy = col.clone();
        col[1] = 7.0;
        assert!(!col.is_shared());
        assert_eq!(&col[..], &[1.5, 7.0, 3.25]);
        assert_eq!(&copy[..], &xs[..]);
        // Misaligned bytes are copied.
        let mut odd = vec![0u8];
        odd.extend_from_slice(keep.stable_bytes());
        let odd: Arc<Vec<u8>> = Arc::new(odd);
        let owner: Owner = odd.clone();
        // SAFETY: as above.
        let col = unsafe {
            Col::<f64>::borrow_or_copy(&odd.stable_bytes()[1..], Some(&owner), |c| {
                f64::from_le_bytes(c.try_into().unwrap())
            })
        };
        assert!(!col.is_shared() || (odd.as_ptr() as usize + 1) % 8 == 0);
        assert_eq!(&col[..], &xs[..]);
    }
}
