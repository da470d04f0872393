//! Detecting UUID prefix collisions so the registry can draw again.

use std::collections::HashSet;

use uuid::Uuid;

use crate::{NameError, UuidPrefix};

/// How many draws [`draw_uuid_avoiding`] callers typically allow: with fewer than half of the
/// 65 536 prefixes taken, 64 draws all colliding has a probability below 2⁻⁶⁴.
pub const DEFAULT_DRAW_ATTEMPTS: u32 = 64;

/// The first of `existing` whose 4-hex prefix equals `new`'s, if any (an identical UUID counts).
///
/// Pass the full UUIDs of the entries whose names could otherwise coincide — for example all
/// entries of the same stage (they are stored in the model cards).
///
/// ```
/// use loraforge_naming::find_prefix_collision;
/// use uuid::Uuid;
/// let a = Uuid::parse_str("3f2a0000-0000-4000-8000-000000000001").unwrap();
/// let b = Uuid::parse_str("3f2affff-0000-4000-8000-000000000002").unwrap();
/// let c = Uuid::parse_str("3f2b0000-0000-4000-8000-000000000003").unwrap();
/// assert_eq!(find_prefix_collision(&b, [&a, &c]), Some(&a));
/// assert_eq!(find_prefix_collision(&c, [&a]), None);
/// ```
pub fn find_prefix_collision<'a>(
    new: &Uuid,
    existing: impl IntoIterator<Item = &'a Uuid>,
) -> Option<&'a Uuid> {
    let prefix = UuidPrefix::of(new);
    existing.into_iter().find(|u| UuidPrefix::of(u) == prefix)
}

/// Draws UUIDs with `draw` (usually `Uuid::new_v4`) until one's prefix is not used by any of
/// `existing`; gives up with [`NameError::PrefixSpaceExhausted`] after `max_attempts` draws.
///
/// ```
/// use loraforge_naming::{draw_uuid_avoiding, UuidPrefix, DEFAULT_DRAW_ATTEMPTS};
/// use uuid::Uuid;
/// let taken = [Uuid::new_v4(), Uuid::new_v4()];
/// let fresh = draw_uuid_avoiding(&taken, Uuid::new_v4, DEFAULT_DRAW_ATTEMPTS).unwrap();
/// assert!(taken.iter().all(|t| UuidPrefix::of(t) != UuidPrefix::of(&fresh)));
/// ```
pub fn draw_uuid_avoiding<'a>(
    existing: impl IntoIterator<Item = &'a Uuid>,
    mut draw: impl FnMut() -> Uuid,
    max_attempts: u32,
) -> Result<Uuid, NameError> {
    let taken: HashSet<UuidPrefix> = existing.into_iter().map(UuidPrefix::of).collect();
    for _ in 0..max_attempts {
        let candidate = draw();
        if !taken.contains(&UuidPrefix::of(&candidate)) {
            return Ok(candidate);
        }
    }
    Err(NameError::PrefixSpaceExhausted {
        attempts: max_attempts,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn uuid(s: &str) -> Uuid {
        Uuid::parse_str(s).unwrap()
    }

    #[test]
    fn collision_is_about_the_first_four_hex_digits_only() {
        let a = uuid("abcd0000-0000-4000-8000-000000000000");
        let same_prefix = uuid("abcdffff-ffff-4fff-bfff-ffffffffffff");
        let differs_in_4th = uuid("abce0000-0000-4000-8000-000000000000");
        assert_eq!(find_prefix_collision(&same_prefix, [&a]), Some(&a));
        assert_eq!(find_prefix_collision(&a, [&a]), Some(&a));
        assert_eq!(find_prefix_collision(&differs_in_4th, [&a]), None);
        assert_eq!(find_prefix_collision(&a, []), None);
    }

    #[test]
    fn draw_skips_taken_prefixes() {
        let taken = [
            uuid("00010000-0000-4000-8000-000000000000"),
            uuid("00020000-0000-4000-8000-000000000000"),
        ];
        let mut queue = vec![
            uuid("0003aaaa-0000-4000-8000-000000000000"),
            uuid("0002bbbb-0000-4000-8000-000000000000"),
            uuid("0001cccc-0000-4000-8000-000000000000"),
        ];
        let got = draw_uuid_avoiding(&taken, || queue.pop().unwrap(), 3).unwrap();
        assert_eq!(got, uuid("0003aaaa-0000-4000-8000-000000000000"));
    }

    #[test]
    fn draw_gives_up() {
        let taken = [uuid("00010000-0000-4000-8000-000000000000")];
        let same = uuid("0001ffff-0000-4000-8000-000000000000");
        assert_eq!(
            draw_uuid_avoiding(&taken, || same, 5),
            Err(NameError::PrefixSpaceExhausted { attempts: 5 })
        );
    }
}
