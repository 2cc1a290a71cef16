//! Where the log's frames start, kept sparse so that memory does not follow
//! the history: one offset per [`MARK_EVERY`] frames (0.5 bytes per
//! entry instead of 8). A read walks the frame headers from the nearest
//! mark, at most `MARK_EVERY - 1` of them.
//!
//! The index of a log prefix ([`FrameLayout`]) is also kept in the state
//! snapshot, so that a start from the snapshot need not scan the frames
//! it covers before serving (they are scanned in the background, and the
//! layout compared: see `docs/curator.md`, "State snapshot").

/// Frames per remembered offset.
pub const MARK_EVERY: u64 = 16;

/// Where the first `entries` frames of a log lie: the offset of every
/// [`MARK_EVERY`]-th one and the byte length of the prefix they make (the
/// end of the last one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrameLayout {
    /// Frames in the prefix.
    pub entries: u64,
    /// Byte offset where the prefix ends (the next frame starts).
    pub end: u64,
    /// `marks[k]` is where frame `k * MARK_EVERY` starts.
    pub marks: Vec<u64>,
}

/// The number of frames and the offset of every [`MARK_EVERY`]-th one.
#[derive(Clone, Debug, Default)]
pub(crate) struct FrameIndex {
    /// `marks[k]` is where frame `k * MARK_EVERY` starts.
    marks: Vec<u64>,
    len: u64,
    /// Where the last frame ends.
    end: u64,
}

impl FrameIndex {
    /// Records that the next frame starts at `offset` and ends at `end`.
    pub(crate) fn push(&mut self, offset: u64, end: u64) {
        if self.len.is_multiple_of(MARK_EVERY) {
            self.marks.push(offset);
        }
        self.len += 1;
        self.end = end;
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

    /// The layout of all the frames.
    pub(crate) fn layout(&self) -> FrameLayout {
        FrameLayout {
            entries: self.len,
            end: self.end,
            marks: self.marks.clone(),
        }
    }

    /// The index of a prefix described by `layout`, if it is well formed
    /// for a log whose first frame starts at `first`: one mark per
    /// [`MARK_EVERY`] frames, the first at `first`, strictly increasing and
    /// below the end (each frame has a header). Whether the frames are
    /// really there is the caller's to check.
    pub(crate) fn from_layout(layout: &FrameLayout, first: u64) -> Option<Self> {
        let want = usize::try_from(layout.entries.div_ceil(MARK_EVERY)).ok()?;
        let well_formed = layout.marks.len() == want
            && layout.marks.first().is_none_or(|m| *m == first)
            && layout.marks.windows(2).all(|w| w[0] < w[1])
            && layout.marks.last().is_none_or(|m| *m < layout.end)
            && (layout.entries > 0 || layout.end == first);
        well_formed.then(|| Self {
            marks: layout.marks.clone(),
            len: layout.entries,
            end: layout.end,
        })
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
            index.push(1000 + 10 * i, 1010 + 10 * i);
        }
        assert_eq!(index.len(), 200);
        assert_eq!(index.mark_before(0), Some((0, 1000)));
        assert_eq!(index.mark_before(15), Some((0, 1000)));
        assert_eq!(index.mark_before(16), Some((16, 1160)));
        assert_eq!(index.mark_before(199), Some((192, 2920)));
        assert_eq!(index.mark_before(200), None);
        assert_eq!(index.marks.len(), 13);
        assert_eq!(index.layout().end, 3000);
    }

    /// A layout is taken back only if it is well formed; what it says
    /// about the frames themselves is checked by the store.
    #[test]
    fn a_layout_round_trips_and_a_malformed_one_is_refused() {
        let mut index = FrameIndex::default();
        for i in 0..40u64 {
            index.push(40 + 10 * i, 50 + 10 * i);
        }
        let layout = index.layout();
        let back = FrameIndex::from_layout(&layout, 40).unwrap();
        assert_eq!(back.layout(), layout);
        assert_eq!(back.mark_before(39), Some((32, 360)));
        let empty = FrameLayout {
            entries: 0,
            end: 40,
            marks: Vec::new(),
        };
        assert!(FrameIndex::from_layout(&empty, 40).is_some());
        let bad = |edit: &dyn Fn(&mut FrameLayout)| {
            let mut l = layout.clone();
            edit(&mut l);
            FrameIndex::from_layout(&l, 40).is_none()
        };
        assert!(bad(&|l| l.entries = 49), "a mark missing");
        assert!(bad(&|l| l.entries = 32), "a mark too many");
        assert!(bad(&|l| l.marks[0] = 41), "not at the first frame");
        assert!(bad(&|l| l.marks.swap(1, 2)), "not increasing");
        assert!(bad(&|l| l.end = 360), "ends before the last mark");
        assert!(bad(&|l| {
            l.entries = 0;
            l.marks.clear();
        }));
    }
}
