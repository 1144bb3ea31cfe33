//! The frozen HNSW graph: fixed-width neighbour lists per node and level, in flat arrays.

/// Marks an unused neighbour slot.
pub const NONE: u32 = u32::MAX;

/// A navigable small-world graph over a segment's rows, as searched and stored.
///
/// Level 0 holds every row with up to `m0` neighbours; a row of level `l > 0` also has up
/// to `m` neighbours on each of levels `1..=l`. Neighbour lists end at the first [`NONE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    /// Neighbours per row on levels above 0.
    pub m: usize,
    /// Neighbours per row on level 0.
    pub m0: usize,
    /// The row searches start from (on the top level).
    pub entry: u32,
    /// Level of each row.
    pub levels: Vec<u8>,
    /// `rows × m0` level-0 neighbour slots.
    pub level0: Vec<u32>,
    /// For each row, where its upper-level lists start in `upper` (in slots), or [`NONE`].
    pub upper_start: Vec<u32>,
    /// The upper-level lists: `level × m` slots for each row of level ≥ 1, levels in order.
    pub upper: Vec<u32>,
}

impl Graph {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.levels.len()
    }

    /// The top level (that of the entry row), 0 for an empty graph.
    pub fn top_level(&self) -> u8 {
        self.levels.get(self.entry as usize).copied().unwrap_or(0)
    }

    /// The neighbours of `row` on `level`.
    #[inline]
    pub fn neighbours(&self, row: u32, level: u8) -> &[u32] {
        let row = row as usize;
        let slots = if level == 0 {
            &self.level0[row * self.m0..(row + 1) * self.m0]
        } else {
            let start = self.upper_start[row] as usize + (level as usize - 1) * self.m;
            &self.upper[start..start + self.m]
        };
        let end = slots.iter().position(|&n| n == NONE).unwrap_or(slots.len());
        &slots[..end]
    }

    /// Bytes of memory the graph takes.
    pub fn memory_bytes(&self) -> usize {
        self.levels.len() + (self.level0.len() + self.upper_start.len() + self.upper.len()) * 4
    }

    /// Checks that every list fits its arrays and names existing rows; a description of the
    /// first fault otherwise (a corrupt artifact).
    pub fn validate(&self) -> Result<(), String> {
        let rows = self.rows();
        if self.m == 0 || self.m0 == 0 {
            return Err("neighbour counts are zero".into());
        }
        if self.level0.len() != rows * self.m0 || self.upper_start.len() != rows {
            return Err(format!("{rows} rows but {} level-0 slots and {} upper starts", self.level0.len(), self.upper_start.len()));
        }
        if rows > 0 && self.entry as usize >= rows {
            return Err(format!("entry row {} of {rows}", self.entry));
        }
        for (row, &level) in self.levels.iter().enumerate() {
            let start = self.upper_start[row];
            if level == 0 {
                continue;
            }
            if level > self.top_level() || start == NONE || start as usize + level as usize * self.m > self.upper.len() {
                return Err(format!("row {row} of level {level} has no room for its upper lists"));
            }
        }
        let bad = |n: &u32| *n != NONE && *n as usize >= rows;
        if let Some(n) = self.level0.iter().chain(&self.upper).find(|n| bad(n)) {
            return Err(format!("a neighbour list names row {n} of {rows}"));
        }
        Ok(())
    }
}
