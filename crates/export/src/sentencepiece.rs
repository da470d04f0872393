//! The pieces of a SentencePiece `tokenizer.model` (a `ModelProto` protobuf).
//!
//! Only `ModelProto.pieces` (field 1) is read: each `SentencePiece` message has `piece` (1,
//! string), `score` (2, float) and `type` (3, enum: NORMAL=1, UNKNOWN=2, CONTROL=3,
//! USER_DEFINED=4, BYTE=6, UNUSED=5; default NORMAL). Everything else is skipped by wire type.

/// `SentencePiece.Type` values (sentencepiece_model.proto).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

#[derive(Debug, Clone)]
pub(crate) struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceType,
}

/// Reads varints, fixed fields and length-delimited fields from a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| "truncated varint".to_string())?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("field of {n} bytes runs past the end"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Reads one key; returns (field number, wire type).
    fn key(&mut self) -> Result<(u64, u8), String> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    /// Returns the payload of a length-delimited field.
    fn len_delimited(&mut self) -> Result<&'a [u8], String> {
        let n = usize::try_from(self.varint()?).map_err(|_| "length overflows".to_string())?;
        self.bytes(n)
    }

    fn skip(&mut self, wire: u8) -> Result<(), String> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.bytes(8).map(|_| ()),
            2 => self.len_delimited().map(|_| ()),
            5 => self.bytes(4).map(|_| ()),
            w => Err(format!("unsupported wire type {w}")),
        }
    }
}

/// Parses the pieces of a serialized `ModelProto`.
pub(crate) fn parse_pieces(buf: &[u8]) -> Result<Vec<Piece>, String> {
    let mut r = Reader { buf, pos: 0 };
    let mut out = Vec::new();
    while !r.done() {
        let (field, wire) = r.key()?;
        if field == 1 && wire == 2 {
            let msg = r.len_delimited()?;
            out.push(parse_piece(msg)?);
        } else {
            r.skip(wire)?;
        }
    }
    if out.is_empty() {
        return Err("no pieces: not a SentencePiece model".into());
    }
    Ok(out)
}

fn parse_piece(buf: &[u8]) -> Result<Piece, String> {
    let mut r = Reader { buf, pos: 0 };
    let mut piece = String::new();
    let mut score = 0.0f32;
    let mut kind = PieceType::Normal;
    while !r.done() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, 2) => {
                let b = r.len_delimited()?;
                piece = String::from_utf8(b.to_vec())
                    .map_err(|_| "piece is not valid UTF-8".to_string())?;
            }
            (2, 5) => {
                let b = r.bytes(4)?;
                score = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            (3, 0) => {
                kind = match r.varint()? {
                    1 => PieceType::Normal,
                    2 => PieceType::Unknown,
                    3 => PieceType::Control,
                    4 => PieceType::UserDefined,
                    5 => PieceType::Unused,
                    6 => PieceType::Byte,
                    t => return Err(format!("unknown piece type {t}")),
                };
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok(Piece { piece, score, kind })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_a_hand_encoded_model_proto() {
        // pieces: {"<unk>", 0.0, UNKNOWN}, {"▁a", -1.5, default NORMAL}; then an unrelated field 2.
        let mut buf = Vec::new();
        let p1 = [
            0x0a, 5, b'<', b'u', b'n', b'k', b'>', 0x15, 0, 0, 0, 0, 0x18, 2,
        ];
        buf.push(0x0a);
        buf.push(p1.len() as u8);
        buf.extend_from_slice(&p1);
        let mut p2 = vec![0x0a, 4];
        p2.extend_from_slice("▁a".as_bytes());
        p2.push(0x15);
        p2.extend_from_slice(&(-1.5f32).to_le_bytes());
        buf.push(0x0a);
        buf.push(p2.len() as u8);
        buf.extend_from_slice(&p2);
        buf.extend_from_slice(&[0x12, 2, 0x08, 1]);
        let pieces = parse_pieces(&buf).unwrap();
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].piece, "<unk>");
        assert_eq!(pieces[0].kind, PieceType::Unknown);
        assert_eq!(pieces[1].piece, "▁a");
        assert_eq!(pieces[1].score, -1.5);
        assert_eq!(pieces[1].kind, PieceType::Normal);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        assert!(parse_pieces(&[0x0a, 10, 1, 2]).is_err());
        assert!(parse_pieces(&[0x0a]).is_err());
        assert!(parse_pieces(&[]).is_err());
    }
}
