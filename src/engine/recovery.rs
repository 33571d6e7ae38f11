//! The one recovery rule of both engines: given where a client says it is and
//! where the stream is, which publications did it miss — or is its position
//! unrecoverable?
//!
//! Exact, as Centrifugo's: a different epoch, an offset ahead of the stream's
//! top, or an offset whose successor is no longer retained are unrecoverable;
//! no arithmetic can wrap (an offset of `u64::MAX` is simply ahead).

use super::{EngineError, StreamPosition};

/// Returns the offset after which the client's missed publications start
/// (publications with `offset > result`), or `Unrecoverable`.
///
/// `oldest_kept` is the offset of the oldest retained publication, or `top + 1`
/// when none is retained.
pub fn missed_after(
    since: &StreamPosition,
    epoch: &str,
    top: u64,
    oldest_kept: u64,
) -> Result<u64, EngineError> {
    if *since.epoch != *epoch || since.offset > top {
        return Err(EngineError::Unrecoverable);
    }
    if since.offset == top {
        return Ok(top);
    }
    // since < top: the next one the client needs is since + 1 (no overflow: since < top)
    if since.offset + 1 < oldest_kept {
        return Err(EngineError::Unrecoverable);
    }
    Ok(since.offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64, epoch: &str) -> StreamPosition {
        StreamPosition {
            offset,
            epoch: epoch.into(),
        }
    }

    #[test]
    fn exact_edges() {
        // stream "e" at top 10 keeping 6..=10
        assert_eq!(missed_after(&at(10, "e"), "e", 10, 6), Ok(10));
        assert_eq!(missed_after(&at(5, "e"), "e", 10, 6), Ok(5));
        assert_eq!(
            missed_after(&at(4, "e"), "e", 10, 6),
            Err(EngineError::Unrecoverable)
        );
        assert_eq!(
            missed_after(&at(11, "e"), "e", 10, 6),
            Err(EngineError::Unrecoverable)
        );
        assert_eq!(
            missed_after(&at(u64::MAX, "e"), "e", 10, 6),
            Err(EngineError::Unrecoverable)
        );
        assert_eq!(
            missed_after(&at(8, "x"), "e", 10, 6),
            Err(EngineError::Unrecoverable)
        );
        // nothing retained (history removed): only "already at top" recovers
        assert_eq!(missed_after(&at(10, "e"), "e", 10, 11), Ok(10));
        assert_eq!(
            missed_after(&at(9, "e"), "e", 10, 11),
            Err(EngineError::Unrecoverable)
        );
        // empty stream
        assert_eq!(missed_after(&at(0, "e"), "e", 0, 1), Ok(0));
        assert_eq!(
            missed_after(&at(99, "e"), "e", 4, 1),
            Err(EngineError::Unrecoverable)
        );
    }
}
