//! Where the log's frames start, kept sparse so that memory does not follow
//! the history: one offset per [`MARK_EVERY`] frames (0.5 bytes per
//! entry instead of 8). A read walks the frame headers from the nearest
//! mark, at most `MARK_EVERY - 1` of them.

/// Frames per remembered offset.
pub(crate) const MARK_EVERY: u64 = 16;

/// The number of frames and the offset of every [`MARK_EVERY`]-th one.
#[derive(Clone, Debug, Default)]
pub(crate) struct FrameIndex {
    /// `marks[k]` is where frame `k * MARK_EVERY` starts.
    marks: Vec<u64>,
    len: u64,
}

impl FrameIndex {
    /// Records that the next frame starts at `offset`.
    pub(crate) fn push(&mut self, offset: u64) {
        if self.len.is_multiple_of(MARK_EVERY) {
            self.marks.push(offset);
        }
        self.len += 1;
    }

    /// The number of frames.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The nearest remembered frame at or before `index` (`index < len`):
    /// its index and offset.
    pub(crate) fn mark_before(&self, index: u64) -> Option<(u64, u64)> {
        if index >= self.len {
            return None;
        }
        let k = index / MARK_EVERY;
        let offset = *self.marks.get(usize::try_from(k).ok()?)?;
        Some((k * MARK_EVERY, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_every_16th_frame() {
        let mut index = FrameIndex::default();
        assert_eq!(index.mark_before(0), None);
        for i in 0..200u64 {
            index.push(1000 + 10 * i);
        }
        assert_eq!(index.len(), 200);
        assert_eq!(index.mark_before(0), Some((0, 1000)));
        assert_eq!(index.mark_before(15), Some((0, 1000)));
        assert_eq!(index.mark_before(16), Some((16, 1160)));
        assert_eq!(index.mark_before(199), Some((192, 2920)));
        assert_eq!(index.mark_before(200), None);
        assert_eq!(index.marks.len(), 13);
    }
}
