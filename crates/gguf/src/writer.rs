//! Streaming GGUF v3 writer: header and tensor infos computed up front, tensor data pulled one
//! tensor at a time from a [`TensorSource`], written to a sibling temp file renamed into place.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::metadata::{Metadata, MetadataArray, MetadataValue, MetadataValueType};
use crate::tensor::{
    pad_to, TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, MAX_ALIGNMENT,
    MAX_DIMS, MAX_TENSOR_NAME_LEN,
};

/// The error a [`TensorSource`] returns; it is kept as the `source` of [`WriteError::Source`].
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Supplies tensor data to [`GgufWriter`], one tensor at a time, in tensor-info order.
///
/// `write_tensor` must write exactly `info.n_bytes()` bytes to `out`; the writer checks this and
/// adds the alignment padding itself. Closures with the same signature implement the trait.
pub trait TensorSource {
    /// Writes the data of tensor `index` (described by `info`) to `out`.
    fn write_tensor(
        &mut self,
        index: usize,
        info: &TensorInfo,
        out: &mut dyn Write,
    ) -> Result<(), SourceError>;
}

impl<F> TensorSource for F
where
    F: FnMut(usize, &TensorInfo, &mut dyn Write) -> Result<(), SourceError>,
{
    fn write_tensor(
        &mut self,
        index: usize,
        info: &TensorInfo,
        out: &mut dyn Write,
    ) -> Result<(), SourceError> {
        self(index, info, out)
    }
}

/// Why a GGUF file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The output path cannot take a file, or its temporary failed.
    #[error(transparent)]
    Staging(#[from] loraforge_staging::StagingError),
    /// A dimension is zero (the reader, like ggml, refuses such tensors).
    #[error("tensor `{tensor}` has a zero-sized dimension (dims {dims:?})")]
    ZeroDim {
        /// Tensor name.
        tensor: String,
        /// Its dims.
        dims: Vec<u64>,
    },
    /// A metadata key is empty (ggml aborts on those).
    #[error("metadata key #{index} is empty")]
    EmptyKey {
        /// Position of the key.
        index: usize,
    },
    /// `general.alignment` is not a `u32`.
    #[error("`general.alignment` must be a u32, found {found}")]
    AlignmentType {
        /// The type found.
        found: MetadataValueType,
    },
    /// `general.alignment` is zero, not a power of two or above 1 MiB.
    #[error("`general.alignment` = {value} must be a power of two between 1 and 1048576")]
    AlignmentValue {
        /// The value found.
        value: u32,
    },
    /// A tensor name is longer than 63 bytes.
    #[error("tensor name `{name}` is {len} bytes long; GGUF allows at most 63")]
    TensorNameTooLong {
        /// The name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// Two tensors have the same name.
    #[error("tensor `{name}` is added twice")]
    DuplicateTensor {
        /// The name.
        name: String,
    },
    /// A tensor has more than 4 dimensions.
    #[error("tensor `{tensor}` has {n_dims} dimensions; GGUF allows at most 4")]
    TooManyDims {
        /// Tensor name.
        tensor: String,
        /// Number of dimensions.
        n_dims: usize,
    },
    /// The row length of a tensor is not a multiple of its type's block size.
    #[error("tensor `{tensor}` has rows of {row_len} elements, not a multiple of the {ty} block size {block}")]
    RowNotBlockMultiple {
        /// Tensor name.
        tensor: String,
        /// Tensor type.
        ty: loraforge_quantize::GgmlType,
        /// `ne[0]`.
        row_len: u64,
        /// Block size of the type.
        block: usize,
    },
    /// A tensor's element count or byte size does not fit (in `i64`, as ggml requires).
    #[error("tensor `{tensor}` with dims {dims:?} is too large")]
    TensorTooLarge {
        /// Tensor name.
        tensor: String,
        /// Its dims.
        dims: Vec<u64>,
    },
    /// The source failed while producing a tensor.
    #[error("could not produce the data of tensor `{tensor}`")]
    Source {
        /// Tensor name.
        tensor: String,
        /// The source's error.
        #[source]
        source: SourceError,
    },
    /// The source wrote fewer or more bytes than the tensor's size.
    #[error("tensor `{tensor}`: the source wrote {written} bytes, expected {expected}")]
    TensorSizeMismatch {
        /// Tensor name.
        tensor: String,
        /// Bytes the tensor's type and shape require.
        expected: u64,
        /// Bytes written (counted up to the first excess write).
        written: u64,
    },
    /// Writing the output failed.
    #[error("could not write GGUF data")]
    Io(#[source] io::Error),
    /// Creating, writing or renaming the output file failed.
    #[error("could not write `{path}`")]
    File {
        /// The file concerned (the temp file or the destination).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl WriteError {
    /// True when the request is at fault (bad metadata or tensor descriptions); false when the
    /// disk or a tensor source failed.
    pub fn is_user_error(&self) -> bool {
        !matches!(
            self,
            WriteError::Source { .. }
                | WriteError::TensorSizeMismatch { .. }
                | WriteError::Io(_)
                | WriteError::File { .. }
        )
    }

    /// What to do next, when there is something more to say than the message.
    pub fn hint(&self) -> Option<String> {
        match self {
            WriteError::Io(_) | WriteError::File { .. } => {
                Some("check the free space and permissions of the output folder".into())
            }
            _ => None,
        }
    }
}

/// Options of [`GgufWriter::write_to_path`].
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Compute the sha256 of the file while writing it.
    pub sha256: bool,
}

/// What [`GgufWriter::write_to_path`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// The destination path.
    pub path: PathBuf,
    /// File size in bytes.
    pub bytes: u64,
    /// Lowercase hex sha256 of the file, when requested.
    pub sha256: Option<String>,
}

/// Byte layout of a GGUF file, computed before any tensor data is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufLayout {
    /// Header, metadata and tensor infos, padded to the alignment.
    pub header: Vec<u8>,
    /// Tensor alignment.
    pub alignment: u64,
    /// Offset of each tensor's data relative to the data section (= `header.len()`).
    pub tensor_offsets: Vec<u64>,
    /// Unpadded byte size of each tensor.
    pub tensor_sizes: Vec<u64>,
    /// Total file size.
    pub file_size: u64,
}

impl GgufLayout {
    /// Absolute file offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.header.len() as u64
    }
}

/// Builds a GGUF v3 file: metadata in insertion order, tensor infos in insertion order, data
/// streamed from a [`TensorSource`].
///
/// ```
/// use loraforge_gguf::{GgufWriter, TensorInfo, SourceError};
/// use loraforge_quantize::GgmlType;
/// use std::io::Write;
///
/// let mut w = GgufWriter::new();
/// w.set("general.architecture", "llama");
/// w.add_tensor(TensorInfo::new("a", GgmlType::F32, vec![3]))?;
/// let mut out = Vec::new();
/// let mut source = |_i: usize, _t: &TensorInfo, out: &mut dyn Write| -> Result<(), SourceError> {
///     for v in [1.0f32, 2.0, 3.0] {
///         out.write_all(&v.to_le_bytes())?;
///     }
///     Ok(())
/// };
/// w.write_to(&mut out, &mut source)?;
/// assert_eq!(&out[..4], b"GGUF");
/// assert_eq!(out.len() as u64, w.layout()?.file_size);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
}

impl GgufWriter {
    /// A writer with no metadata and no tensor.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer starting from `metadata`.
    pub fn with_metadata(metadata: Metadata) -> Self {
        GgufWriter {
            metadata,
            tensors: Vec::new(),
        }
    }

    /// Sets a metadata key (appended, or replaced in place if present).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<MetadataValue>) -> &mut Self {
        self.metadata.set(key, value);
        self
    }

    /// The metadata so far.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The metadata, to edit.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// The tensors so far.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Adds a tensor after checking what ggml's reader checks: name length, uniqueness, number
    /// of dimensions, rows in whole blocks, size representable.
    pub fn add_tensor(&mut self, info: TensorInfo) -> Result<&mut Self, WriteError> {
        validate_tensor(&info)?;
        if self.tensors.iter().any(|t| t.name == info.name) {
            return Err(WriteError::DuplicateTensor { name: info.name });
        }
        self.tensors.push(info);
        Ok(self)
    }

    /// Computes the header bytes and every tensor's offset.
    pub fn layout(&self) -> Result<GgufLayout, WriteError> {
        let alignment = alignment_of(&self.metadata)?;
        let mut header = Vec::new();
        header.extend_from_slice(&GGUF_MAGIC);
        header.extend_from_slice(&GGUF_VERSION.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (index, (key, value)) in self.metadata.iter().enumerate() {
            if key.is_empty() {
                return Err(WriteError::EmptyKey { index });
            }
            put_str(&mut header, key);
            header.extend_from_slice(&value.value_type().id().to_le_bytes());
            put_value(&mut header, value);
        }
        let mut tensor_offsets = Vec::with_capacity(self.tensors.len());
        let mut tensor_sizes = Vec::with_capacity(self.tensors.len());
        let mut offset = 0u64;
        for t in &self.tensors {
            let too_large = || WriteError::TensorTooLarge {
                tensor: t.name.clone(),
                dims: t.dims.clone(),
            };
            let size = t.n_bytes().ok_or_else(too_large)?;
            put_str(&mut header, &t.name);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&t.ty.id().to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            tensor_offsets.push(offset);
            tensor_sizes.push(size);
            offset = pad_to(size, alignment)
                .and_then(|p| offset.checked_add(p))
                .ok_or_else(too_large)?;
        }
        let header_len = pad_to(header.len() as u64, alignment).unwrap_or(u64::MAX);
        header.resize(header_len as usize, 0);
        let file_size =
            header_len
                .checked_add(offset)
                .ok_or_else(|| WriteError::TensorTooLarge {
                    tensor: self
                        .tensors
                        .last()
                        .map(|t| t.name.clone())
                        .unwrap_or_default(),
                    dims: Vec::new(),
                })?;
        Ok(GgufLayout {
            header,
            alignment,
            tensor_offsets,
            tensor_sizes,
            file_size,
        })
    }

    /// Writes the whole file to `out`, pulling tensor data from `source`. Returns the bytes
    /// written.
    pub fn write_to(
        &self,
        out: &mut dyn Write,
        source: &mut dyn TensorSource,
    ) -> Result<u64, WriteError> {
        self.write_laid_out(&self.layout()?, out, source)
    }

    /// [`GgufWriter::write_to`] with this writer's `layout`, computed once by the caller.
    fn write_laid_out(
        &self,
        layout: &GgufLayout,
        out: &mut dyn Write,
        source: &mut dyn TensorSource,
    ) -> Result<u64, WriteError> {
        out.write_all(&layout.header).map_err(WriteError::Io)?;
        let zeros = vec![0u8; layout.alignment as usize];
        for (index, info) in self.tensors.iter().enumerate() {
            let expected = layout.tensor_sizes[index];
            let mut limited = Limited {
                inner: out,
                remaining: expected,
                written: 0,
                overrun: false,
                sink_error: None,
            };
            let result = source.write_tensor(index, info, &mut limited);
            if let Some(e) = limited.sink_error.take() {
                return Err(WriteError::Io(e));
            }
            if limited.overrun || (result.is_ok() && limited.written != expected) {
                return Err(WriteError::TensorSizeMismatch {
                    tensor: info.name.clone(),
                    expected,
                    written: limited.written,
                });
            }
            result.map_err(|source| WriteError::Source {
                tensor: info.name.clone(),
                source,
            })?;
            let pad = pad_to(expected, layout.alignment).unwrap_or(expected) - expected;
            out.write_all(&zeros[..pad as usize])
                .map_err(WriteError::Io)?;
        }
        out.flush().map_err(WriteError::Io)?;
        Ok(layout.file_size)
    }

    /// Writes the file to a temp file next to `path`, then renames it to `path`. On any error
    /// the temp file is removed and `path` is untouched.
    pub fn write_to_path(
        &self,
        path: &Path,
        source: &mut dyn TensorSource,
        options: &WriteOptions,
    ) -> Result<WrittenFile, WriteError> {
        // a device, FIFO, socket or folder at `path` is refused before any work (a rename would
        // replace it); the temporary is unique per run, removed on error, on SIGINT/SIGTERM
        // (through the CLI) and, after a SIGKILL, by the next run writing `path`
        loraforge_staging::check_output(path, loraforge_staging::OutputKind::File)?;
        let (temp, file) = loraforge_staging::Staged::file_beside(path)?;
        let layout = self.layout()?;
        loraforge_staging::preallocate(&file, layout.file_size).map_err(|source| {
            WriteError::File {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let hashing = HashingWriter {
            inner: file,
            hasher: options.sha256.then(Sha256::new),
        };
        let mut buffered = BufWriter::with_capacity(1 << 20, hashing);
        let bytes = match self.write_laid_out(&layout, &mut buffered, source) {
            Ok(b) => b,
            Err(WriteError::Io(e)) => {
                return Err(WriteError::File {
                    path: path.to_path_buf(),
                    source: e,
                })
            }
            Err(e) => return Err(e),
        };
        let hashing = buffered.into_inner().map_err(|e| WriteError::File {
            path: path.to_path_buf(),
            source: e.into_error(),
        })?;
        let sha256 = hashing.hasher.map(|h| hex::encode(h.finalize()));
        temp.persist(path)?;
        Ok(WrittenFile {
            path: path.to_path_buf(),
            bytes,
            sha256,
        })
    }
}

fn validate_tensor(info: &TensorInfo) -> Result<(), WriteError> {
    if info.name.len() > MAX_TENSOR_NAME_LEN {
        return Err(WriteError::TensorNameTooLong {
            name: info.name.clone(),
            len: info.name.len(),
        });
    }
    if info.dims.len() > MAX_DIMS {
        return Err(WriteError::TooManyDims {
            tensor: info.name.clone(),
            n_dims: info.dims.len(),
        });
    }
    if info.dims.contains(&0) {
        return Err(WriteError::ZeroDim {
            tensor: info.name.clone(),
            dims: info.dims.clone(),
        });
    }
    let block = info.ty.block_size();
    if !info.row_len().is_multiple_of(block as u64) {
        return Err(WriteError::RowNotBlockMultiple {
            tensor: info.name.clone(),
            ty: info.ty,
            row_len: info.row_len(),
            block,
        });
    }
    let fits = info.n_elements().is_some_and(|n| n < i64::MAX as u64)
        && info.n_bytes().is_some_and(|n| n < i64::MAX as u64);
    if !fits {
        return Err(WriteError::TensorTooLarge {
            tensor: info.name.clone(),
            dims: info.dims.clone(),
        });
    }
    Ok(())
}

/// The alignment `metadata` asks for, validated as ggml does.
pub(crate) fn alignment_of(metadata: &Metadata) -> Result<u64, WriteError> {
    match metadata.get(ALIGNMENT_KEY) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(MetadataValue::U32(v)) => {
            let a = u64::from(*v);
            if a == 0 || !a.is_power_of_two() || a > MAX_ALIGNMENT {
                Err(WriteError::AlignmentValue { value: *v })
            } else {
                Ok(a)
            }
        }
        Some(other) => Err(WriteError::AlignmentType {
            found: other.value_type(),
        }),
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &MetadataValue) {
    use MetadataValue as V;
    match value {
        V::U8(v) => out.push(*v),
        V::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        V::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        V::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        V::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        V::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        V::F32(v) => out.extend_from_slice(&v.to_bits().to_le_bytes()),
        V::Bool(v) => out.push(u8::from(*v)),
        V::String(s) => put_str(out, s),
        V::Array(a) => put_array(out, a),
        V::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        V::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        V::F64(v) => out.extend_from_slice(&v.to_bits().to_le_bytes()),
    }
}

fn put_array(out: &mut Vec<u8>, array: &MetadataArray) {
    use MetadataArray as A;
    out.extend_from_slice(&array.element_type().id().to_le_bytes());
    out.extend_from_slice(&(array.len() as u64).to_le_bytes());
    macro_rules! le {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match array {
        A::U8(v) => out.extend_from_slice(v),
        A::I8(v) => le!(v),
        A::U16(v) => le!(v),
        A::I16(v) => le!(v),
        A::U32(v) => le!(v),
        A::I32(v) => le!(v),
        A::F32(v) => le!(v.iter().map(|f| f.to_bits())),
        A::Bool(v) => out.extend(v.iter().map(|b| u8::from(*b))),
        A::String(v) => {
            for s in v {
                put_str(out, s);
            }
        }
        A::Array(v) => {
            for inner in v {
                put_array(out, inner);
            }
        }
        A::U64(v) => le!(v),
        A::I64(v) => le!(v),
        A::F64(v) => le!(v.iter().map(|f| f.to_bits())),
    }
}

/// Passes at most `remaining` bytes through, remembering an excess and any error of the sink.
struct Limited<'a> {
    inner: &'a mut dyn Write,
    remaining: u64,
    written: u64,
    overrun: bool,
    sink_error: Option<io::Error>,
}

impl Write for Limited<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.remaining {
            self.overrun = true;
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "tensor data longer than its type and shape allow",
            ));
        }
        match self.inner.write(buf) {
            Ok(n) => {
                self.remaining -= n as u64;
                self.written += n as u64;
                Ok(n)
            }
            Err(e) => {
                let kind = e.kind();
                if kind != io::ErrorKind::Interrupted {
                    self.sink_error = Some(e);
                    return Err(io::Error::new(kind, "writing the GGUF output failed"));
                }
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct HashingWriter {
    inner: std::fs::File,
    hasher: Option<Sha256>,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
