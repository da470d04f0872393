//! GGUF reader: validates what ggml's `gguf_init_from_file_impl` validates, with every length
//! checked against a named cap and the remaining bytes before anything is allocated. Never
//! panics, whatever the input.

use std::fs::File;
use std::path::{Path, PathBuf};

use loraforge_quantize::GgmlType;

use crate::metadata::{Metadata, MetadataArray, MetadataValue, MetadataValueType};
use crate::tensor::{
    pad_to, TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ALIGNMENT, MAX_DIMS,
    MAX_TENSOR_NAME_LEN,
};

/// Longest string accepted (`GGUF_MAX_STRING_LENGTH`, 64 MiB).
pub const MAX_STRING_LEN: u64 = 64 * 1024 * 1024;
/// Most elements in one array (`GGUF_MAX_ARRAY_ELEMENTS`, 64 Mi).
pub const MAX_ARRAY_LEN: u64 = 64 * 1024 * 1024;
/// Deepest nesting of arrays of arrays accepted (ggml accepts none; gguf-py any).
pub const MAX_ARRAY_DEPTH: usize = 8;

/// Why bytes are not a valid GGUF file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The data ends inside a header field.
    #[error("unexpected end of file at byte {offset} while reading {what}")]
    Truncated {
        /// What was being read.
        what: String,
        /// Where.
        offset: u64,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic is {found:02x?}, expected \"GGUF\"")]
    BadMagic {
        /// The bytes found.
        found: Vec<u8>,
    },
    /// Version 1, 0, above 3, or byte-swapped.
    #[error("unsupported GGUF version {version} (supported: 2 and 3, little-endian)")]
    UnsupportedVersion {
        /// The version field.
        version: u32,
    },
    /// The tensor count cannot fit in the file.
    #[error("tensor count {count} is impossible for a file of this size")]
    TooManyTensors {
        /// The count field.
        count: u64,
    },
    /// The key-value count cannot fit in the file.
    #[error("metadata count {count} is impossible for a file of this size")]
    TooManyKeys {
        /// The count field.
        count: u64,
    },
    /// A string is longer than [`MAX_STRING_LEN`] or than the rest of the file.
    #[error("{what}: string length {len} exceeds the limit ({max} bytes, or the end of the file)")]
    StringTooLong {
        /// Which string.
        what: String,
        /// Its declared length.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// A string is not UTF-8.
    #[error("{what}: string is not valid UTF-8")]
    InvalidUtf8 {
        /// Which string.
        what: String,
    },
    /// A metadata key is empty.
    #[error("metadata key #{index} is empty")]
    EmptyKey {
        /// Position of the key.
        index: u64,
    },
    /// A metadata key appears twice.
    #[error("duplicate metadata key `{key}`")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// Unknown value type id.
    #[error("metadata key `{key}` has invalid value type {type_id}")]
    InvalidValueType {
        /// The key.
        key: String,
        /// The type id found.
        type_id: u32,
    },
    /// A bool byte other than 0 or 1.
    #[error("metadata key `{key}` has bool byte {value}, expected 0 or 1")]
    InvalidBool {
        /// The key.
        key: String,
        /// The byte found.
        value: u8,
    },
    /// An array longer than [`MAX_ARRAY_LEN`] or than the rest of the file.
    #[error("metadata key `{key}`: array of {len} elements exceeds the limit ({max} elements, or the end of the file)")]
    ArrayTooLong {
        /// The key.
        key: String,
        /// The declared length.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// Arrays nested deeper than [`MAX_ARRAY_DEPTH`].
    #[error("metadata key `{key}`: arrays nested deeper than {max}")]
    ArrayTooDeep {
        /// The key.
        key: String,
        /// The cap.
        max: usize,
    },
    /// `general.alignment` is not a `u32`.
    #[error("`general.alignment` must be a u32, found {found}")]
    AlignmentType {
        /// The type found.
        found: MetadataValueType,
    },
    /// `general.alignment` is zero, not a power of two, or above 1 MiB.
    #[error("`general.alignment` = {value} is not a power of two between 1 and 1048576")]
    AlignmentValue {
        /// The value.
        value: u32,
    },
    /// A tensor name is 64 bytes or longer.
    #[error("tensor #{index} has a name of {len} bytes; at most 63 are allowed")]
    TensorNameTooLong {
        /// Position of the tensor.
        index: u64,
        /// Declared length.
        len: u64,
    },
    /// Two tensors share a name.
    #[error("duplicate tensor name `{name}`")]
    DuplicateTensor {
        /// The name.
        name: String,
    },
    /// More than 4 dimensions.
    #[error("tensor `{tensor}` has {n_dims} dimensions; at most 4 are allowed")]
    TooManyDims {
        /// Tensor name.
        tensor: String,
        /// Declared dimension count.
        n_dims: u32,
    },
    /// A dimension is negative as an `i64` (ggml reads dims as `int64_t`).
    #[error("tensor `{tensor}` dimension {dim} is negative ({value} as i64)")]
    NegativeDim {
        /// Tensor name.
        tensor: String,
        /// Which dimension.
        dim: usize,
        /// The raw value.
        value: u64,
    },
    /// A dimension is zero: a tensor without elements, which no model holds (ggml divides by
    /// the dimensions when it checks sizes).
    #[error(
        "tensor `{tensor}` has a zero-sized dimension {dim} (dims {dims:?}); the file is corrupt"
    )]
    ZeroDim {
        /// Tensor name.
        tensor: String,
        /// Which dimension.
        dim: usize,
        /// All dims.
        dims: Vec<u64>,
    },
    /// Bytes after the end of the data section (past the last tensor and its alignment padding).
    #[error("{extra} bytes follow the end of the tensor data (at {data_end}, file is {file_len} bytes): a corrupt or concatenated file")]
    TrailingBytes {
        /// Where the data section (with its padding) ends.
        data_end: u64,
        /// File length.
        file_len: u64,
        /// `file_len - data_end`.
        extra: u64,
    },
    /// The element count or byte size overflows `i64`.
    #[error("tensor `{tensor}` with dims {dims:?} is too large")]
    TensorTooLarge {
        /// Tensor name.
        tensor: String,
        /// Dims.
        dims: Vec<u64>,
    },
    /// A tensor type id this crate does not know.
    #[error("tensor `{tensor}` has unsupported ggml type id {type_id}")]
    UnsupportedTensorType {
        /// Tensor name.
        tensor: String,
        /// Type id found.
        type_id: u32,
    },
    /// The row length is not a multiple of the type's block size.
    #[error("tensor `{tensor}` of type {ty} has {row_len} elements per row, not a multiple of the block size {block}")]
    RowNotBlockMultiple {
        /// Tensor name.
        tensor: String,
        /// Tensor type.
        ty: GgmlType,
        /// `ne[0]`.
        row_len: u64,
        /// Block size.
        block: usize,
    },
    /// The tensor's offset is not where packing in info order puts it.
    #[error("tensor `{tensor}` has offset {offset}, expected {expected}")]
    BadTensorOffset {
        /// Tensor name.
        tensor: String,
        /// Offset found.
        offset: u64,
        /// Offset required.
        expected: u64,
    },
    /// The tensor's data extends beyond the end of the file.
    #[error(
        "tensor `{tensor}` data [{start}, {end}) is beyond the end of the file ({file_len} bytes)"
    )]
    TensorOutOfBounds {
        /// Tensor name.
        tensor: String,
        /// Absolute start offset.
        start: u64,
        /// Absolute end offset.
        end: u64,
        /// File length.
        file_len: u64,
    },
}

/// Why a GGUF file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or mapped.
    #[error("could not read `{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid GGUF.
    #[error("`{path}` is not a valid GGUF file")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: FormatError,
    },
}

impl ReadError {
    /// True when the file is at fault (not GGUF, truncated, malformed); false when the machine
    /// could not read it.
    pub fn is_user_error(&self) -> bool {
        match self {
            ReadError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            ),
            ReadError::Format { .. } => true,
        }
    }

    /// What to do next, when there is something more to say than the message.
    pub fn hint(&self) -> Option<String> {
        match self {
            ReadError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Some("check the path".into())
            }
            ReadError::Format { .. } => Some(
                "the file may be truncated (an interrupted download?) or not a GGUF file".into(),
            ),
            ReadError::Io { .. } => None,
        }
    }
}

/// One tensor of a parsed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// Name, type and dims.
    pub info: TensorInfo,
    /// Offset relative to the data section.
    pub offset: u64,
    /// Data size in bytes (unpadded).
    pub size: u64,
}

/// The parsed header of a GGUF file: everything but the tensor data.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufHeader {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Metadata,
    /// Tensors in file order.
    pub tensors: Vec<TensorEntry>,
    /// Tensor alignment.
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
}

impl GgufHeader {
    /// Parses and validates the header of a complete file held in `bytes` (tensor bounds are
    /// checked against `bytes.len()`).
    pub fn parse(bytes: &[u8]) -> Result<GgufHeader, FormatError> {
        parse(bytes)
    }

    /// Index and entry of the tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<(usize, &TensorEntry)> {
        self.tensors
            .iter()
            .enumerate()
            .find(|(_, t)| t.info.name == name)
    }
}

enum Storage {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A validated GGUF file, memory-mapped (or held in memory).
///
/// ```no_run
/// use loraforge_gguf::GgufFile;
/// let file = GgufFile::open("model.gguf".as_ref())?;
/// for (key, value) in file.metadata().iter() {
///     println!("{key} = {value:?}");
/// }
/// for (i, t) in file.tensors().iter().enumerate() {
///     println!("{} {} {:?} {} bytes", t.info.name, t.info.ty, t.info.dims, file.tensor_data(i).len());
/// }
/// # Ok::<(), loraforge_gguf::ReadError>(())
/// ```
pub struct GgufFile {
    storage: Storage,
    header: GgufHeader,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("len", &self.storage.bytes().len())
            .field("header", &self.header)
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and validates `path`.
    ///
    /// The file must not be modified while it is open (the usual memory-map caveat); loraforge
    /// itself only ever replaces files by renaming new ones into place.
    pub fn open(path: &Path) -> Result<GgufFile, ReadError> {
        let io = |source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; the documented contract is that the file is not modified
        // while mapped. Every read through it is bounds-checked against its length.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let header = parse(&map).map_err(|source| ReadError::Format {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(GgufFile {
            storage: Storage::Mmap(map),
            header,
            path: Some(path.to_path_buf()),
        })
    }

    /// Validates a file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, FormatError> {
        let header = parse(&bytes)?;
        Ok(GgufFile {
            storage: Storage::Owned(bytes),
            header,
            path: None,
        })
    }

    /// The path given to [`GgufFile::open`].
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The parsed header.
    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    /// Format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }

    /// Tensors in file order.
    pub fn tensors(&self) -> &[TensorEntry] {
        &self.header.tensors
    }

    /// Tensor alignment.
    pub fn alignment(&self) -> u64 {
        self.header.alignment
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.header.data_offset
    }

    /// File length in bytes.
    pub fn len(&self) -> u64 {
        self.storage.bytes().len() as u64
    }

    /// True for an empty file (never the case for a valid one).
    pub fn is_empty(&self) -> bool {
        self.storage.bytes().is_empty()
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// The data of tensor `index` (empty for an index out of range).
    pub fn tensor_data(&self, index: usize) -> &[u8] {
        let Some(t) = self.header.tensors.get(index) else {
            return &[];
        };
        // Bounds were validated by `parse`; `get` keeps this panic-free regardless.
        let start = self.header.data_offset.saturating_add(t.offset);
        let end = start.saturating_add(t.size);
        usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| self.storage.bytes().get(s..e))
            .unwrap_or(&[])
    }

    /// Index and entry of the tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<(usize, &TensorEntry)> {
        self.header.tensor(name)
    }

    /// Tells the OS the file will be read front to back (more read-ahead). A hint only: does
    /// nothing for in-memory files or where unsupported.
    pub fn advise_sequential(&self) {
        #[cfg(unix)]
        if let Storage::Mmap(m) = &self.storage {
            let _ = m.advise(memmap2::Advice::Sequential);
        }
    }

    /// Drops this process's resident pages for `range` (bytes relative to the start of tensor
    /// `index`'s data) so that streaming through a large file keeps the resident set small. The
    /// data stays in the OS page cache and is faulted back in if read again. A hint only: does
    /// nothing for in-memory files, out-of-range arguments, or where unsupported.
    pub fn release_tensor_range(&self, index: usize, range: std::ops::Range<u64>) {
        #[cfg(unix)]
        if let (Storage::Mmap(m), Some(t)) = (&self.storage, self.header.tensors.get(index)) {
            let end = range.end.min(t.size);
            if range.start >= end {
                return;
            }
            let start = self.header.data_offset.saturating_add(t.offset) + range.start;
            let (Ok(start), Ok(len)) = (usize::try_from(start), usize::try_from(end - range.start))
            else {
                return;
            };
            // SAFETY: the map is a read-only shared file mapping (`Mmap::map`). MADV_DONTNEED on
            // such a mapping only discards this process's page-table entries; any later access,
            // including through slices borrowed from `self`, faults the unchanged file contents
            // back in from the page cache. No memory is freed or zeroed under a live reference.
            let _ =
                unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len) };
        }
        #[cfg(not(unix))]
        let _ = (index, range);
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], FormatError> {
        let truncated = || FormatError::Truncated {
            what: what(),
            offset: self.pos as u64,
        };
        let n = usize::try_from(n).map_err(|_| truncated())?;
        let end = self.pos.checked_add(n).ok_or_else(truncated)?;
        let s = self.bytes.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], FormatError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String, max: u64) -> Result<String, FormatError> {
        let len = self.u64(what)?;
        if len > max || len > self.remaining() {
            return Err(FormatError::StringTooLong {
                what: what(),
                len,
                max,
            });
        }
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| FormatError::InvalidUtf8 { what: what() })
    }
}

fn parse(bytes: &[u8]) -> Result<GgufHeader, FormatError> {
    let mut c = Cursor { bytes, pos: 0 };
    let magic = c.take(4, &|| "the magic".to_owned())?;
    if magic != GGUF_MAGIC {
        return Err(FormatError::BadMagic {
            found: magic.to_vec(),
        });
    }
    let version = c.u32(&|| "the version".to_owned())?;
    if !(2..=3).contains(&version) {
        return Err(FormatError::UnsupportedVersion { version });
    }
    let n_tensors = c.u64(&|| "the tensor count".to_owned())?;
    let n_kv = c.u64(&|| "the metadata count".to_owned())?;
    // Smallest encodings: a KV is key length (8) + 1 key byte + type (4) + 1 value byte; a
    // tensor info is name length (8) + dims count (4) + type (4) + offset (8).
    if n_kv > c.remaining() / 14 {
        return Err(FormatError::TooManyKeys { count: n_kv });
    }
    if n_tensors > c.remaining() / 24 {
        return Err(FormatError::TooManyTensors { count: n_tensors });
    }

    let mut metadata = Metadata::new();
    let mut seen = std::collections::HashSet::new();
    for index in 0..n_kv {
        let key = c.string(&|| format!("metadata key #{index}"), MAX_STRING_LEN)?;
        if key.is_empty() {
            return Err(FormatError::EmptyKey { index });
        }
        if !seen.insert(key.clone()) {
            return Err(FormatError::DuplicateKey { key });
        }
        let what = || format!("the value of `{key}`");
        let type_id = c.u32(&what)?;
        let value = read_value(&mut c, &key, type_id, 0)?;
        metadata.push_unchecked(key, value);
    }

    let alignment = match metadata.get(ALIGNMENT_KEY) {
        None => DEFAULT_ALIGNMENT,
        Some(MetadataValue::U32(v)) => {
            let a = u64::from(*v);
            if a == 0 || !a.is_power_of_two() || a > MAX_ALIGNMENT {
                return Err(FormatError::AlignmentValue { value: *v });
            }
            a
        }
        Some(other) => {
            return Err(FormatError::AlignmentType {
                found: other.value_type(),
            })
        }
    };

    let mut tensors: Vec<TensorEntry> = Vec::new();
    let mut names = std::collections::HashSet::new();
    let mut raw_offsets = Vec::new();
    for index in 0..n_tensors {
        let what = || format!("tensor info #{index}");
        let len = c.u64(&what)?;
        if len > MAX_TENSOR_NAME_LEN as u64 {
            return Err(FormatError::TensorNameTooLong { index, len });
        }
        let raw = c.take(len, &what)?;
        let name = String::from_utf8(raw.to_vec()).map_err(|_| FormatError::InvalidUtf8 {
            what: format!("tensor name #{index}"),
        })?;
        if !names.insert(name.clone()) {
            return Err(FormatError::DuplicateTensor { name });
        }
        let what = || format!("tensor info of `{name}`");
        let n_dims = c.u32(&what)?;
        if n_dims as usize > MAX_DIMS {
            return Err(FormatError::TooManyDims {
                tensor: name,
                n_dims,
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for dim in 0..n_dims as usize {
            let value = c.u64(&what)?;
            if value > i64::MAX as u64 {
                return Err(FormatError::NegativeDim {
                    tensor: name,
                    dim,
                    value,
                });
            }
            dims.push(value);
        }
        if let Some(dim) = dims.iter().position(|&d| d == 0) {
            return Err(FormatError::ZeroDim {
                tensor: name,
                dim,
                dims,
            });
        }
        let type_id = c.u32(&what)?;
        let offset = c.u64(&what)?;
        let Some(ty) = GgmlType::from_id(type_id) else {
            return Err(FormatError::UnsupportedTensorType {
                tensor: name,
                type_id,
            });
        };
        let info = TensorInfo { name, ty, dims };
        let too_large = |info: &TensorInfo| FormatError::TensorTooLarge {
            tensor: info.name.clone(),
            dims: info.dims.clone(),
        };
        if info.n_elements().is_none_or(|n| n >= i64::MAX as u64) {
            return Err(too_large(&info));
        }
        let block = ty.block_size();
        if !info.row_len().is_multiple_of(block as u64) {
            return Err(FormatError::RowNotBlockMultiple {
                row_len: info.row_len(),
                tensor: info.name,
                ty,
                block,
            });
        }
        let Some(size) = info.n_bytes().filter(|&n| n < i64::MAX as u64) else {
            return Err(too_large(&info));
        };
        raw_offsets.push(offset);
        tensors.push(TensorEntry { info, offset, size });
    }

    let header_end = c.pos as u64;
    let data_offset = if tensors.is_empty() {
        header_end
    } else {
        pad_to(header_end, alignment).unwrap_or(u64::MAX)
    };
    let file_len = bytes.len() as u64;
    let mut expected = 0u64;
    for t in &tensors {
        if t.offset != expected {
            return Err(FormatError::BadTensorOffset {
                tensor: t.info.name.clone(),
                offset: t.offset,
                expected,
            });
        }
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.size));
        match (start, end) {
            (Some(_), Some(end)) if end <= file_len => {}
            (start, end) => {
                return Err(FormatError::TensorOutOfBounds {
                    tensor: t.info.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_len,
                })
            }
        }
        expected = pad_to(t.size, alignment)
            .and_then(|p| expected.checked_add(p))
            .ok_or_else(|| FormatError::TensorTooLarge {
                tensor: t.info.name.clone(),
                dims: t.info.dims.clone(),
            })?;
    }
    // llama.cpp reads exactly the data section and ignores what follows; refusing it catches
    // a concatenated or corrupt file (writers end at the padded data section at the latest).
    let data_end = pad_to(header_end, alignment)
        .and_then(|d| d.checked_add(expected))
        .unwrap_or(u64::MAX);
    if file_len > data_end {
        return Err(FormatError::TrailingBytes {
            data_end,
            file_len,
            extra: file_len - data_end,
        });
    }
    Ok(GgufHeader {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

fn read_value(
    c: &mut Cursor<'_>,
    key: &str,
    type_id: u32,
    depth: usize,
) -> Result<MetadataValue, FormatError> {
    use MetadataValue as V;
    use MetadataValueType as T;
    let what = || format!("the value of `{key}`");
    let ty = MetadataValueType::from_id(type_id).ok_or_else(|| FormatError::InvalidValueType {
        key: key.to_owned(),
        type_id,
    })?;
    Ok(match ty {
        T::U8 => V::U8(u8::from_le_bytes(c.array(&what)?)),
        T::I8 => V::I8(i8::from_le_bytes(c.array(&what)?)),
        T::U16 => V::U16(u16::from_le_bytes(c.array(&what)?)),
        T::I16 => V::I16(i16::from_le_bytes(c.array(&what)?)),
        T::U32 => V::U32(u32::from_le_bytes(c.array(&what)?)),
        T::I32 => V::I32(i32::from_le_bytes(c.array(&what)?)),
        T::F32 => V::F32(f32::from_le_bytes(c.array(&what)?)),
        T::Bool => V::Bool(read_bool(c, key)?),
        T::String => V::String(c.string(&what, MAX_STRING_LEN)?),
        T::Array => V::Array(read_array(c, key, depth)?),
        T::U64 => V::U64(u64::from_le_bytes(c.array(&what)?)),
        T::I64 => V::I64(i64::from_le_bytes(c.array(&what)?)),
        T::F64 => V::F64(f64::from_le_bytes(c.array(&what)?)),
    })
}

fn read_bool(c: &mut Cursor<'_>, key: &str) -> Result<bool, FormatError> {
    let [b] = c.array(&|| format!("the value of `{key}`"))?;
    match b {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(FormatError::InvalidBool {
            key: key.to_owned(),
            value,
        }),
    }
}

fn read_array(c: &mut Cursor<'_>, key: &str, depth: usize) -> Result<MetadataArray, FormatError> {
    use MetadataArray as A;
    use MetadataValueType as T;
    if depth >= MAX_ARRAY_DEPTH {
        return Err(FormatError::ArrayTooDeep {
            key: key.to_owned(),
            max: MAX_ARRAY_DEPTH,
        });
    }
    let what = || format!("the value of `{key}`");
    let type_id = c.u32(&what)?;
    let ty = MetadataValueType::from_id(type_id).ok_or_else(|| FormatError::InvalidValueType {
        key: key.to_owned(),
        type_id,
    })?;
    let len = c.u64(&what)?;
    // Each element takes at least this many bytes: the fixed size, a string's u64 length, an
    // inner array's type + count.
    let min_size = match ty {
        T::String => 8,
        T::Array => 12,
        other => other.fixed_size().unwrap_or(1) as u64,
    };
    if len > MAX_ARRAY_LEN || len > c.remaining() / min_size {
        return Err(FormatError::ArrayTooLong {
            key: key.to_owned(),
            len,
            max: MAX_ARRAY_LEN,
        });
    }
    let n = len as usize;
    macro_rules! fixed {
        ($variant:ident, $t:ty) => {{
            let raw = c.take(len * min_size, &what)?;
            A::$variant(
                raw.chunks_exact(std::mem::size_of::<$t>())
                    .map(|ch| {
                        let mut a = [0u8; std::mem::size_of::<$t>()];
                        a.copy_from_slice(ch);
                        <$t>::from_le_bytes(a)
                    })
                    .collect(),
            )
        }};
    }
    Ok(match ty {
        T::U8 => A::U8(c.take(len, &what)?.to_vec()),
        T::I8 => fixed!(I8, i8),
        T::U16 => fixed!(U16, u16),
        T::I16 => fixed!(I16, i16),
        T::U32 => fixed!(U32, u32),
        T::I32 => fixed!(I32, i32),
        T::F32 => fixed!(F32, f32),
        T::Bool => {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(read_bool(c, key)?);
            }
            A::Bool(v)
        }
        T::String => {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                v.push(c.string(&|| format!("element {i} of `{key}`"), MAX_STRING_LEN)?);
            }
            A::String(v)
        }
        T::Array => {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(read_array(c, key, depth + 1)?);
            }
            A::Array(v)
        }
        T::U64 => fixed!(U64, u64),
        T::I64 => fixed!(I64, i64),
        T::F64 => fixed!(F64, f64),
    })
}
