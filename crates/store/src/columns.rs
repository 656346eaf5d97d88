//! Parquet encoding of one month of one batch, and fast column readers.

// Titles are hashed once per distinct title and file: hashbrown's randomly
// seeded foldhash is several times faster than SipHash on such short keys.
use hashbrown::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow_array::types::Int32Type;
use arrow_array::{
    Array, ArrayRef, Date32Array, DictionaryArray, FixedSizeBinaryArray, Int32Array, Int64Array,
    RecordBatch, StringArray,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use loans::{BorrowerNumbering, LoanMonth, Loans, PSEUDONYM_LEN, Pseudonym, TitleOrder};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::Compression;
use parquet::basic::{Encoding, EncodingMask, PageType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::metadata::{ColumnChunkMetaData, PageEncodingStats};
use parquet::file::page_index::offset_index::{OffsetIndexMetaData, PageLocation};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;
use parquet::schema::types::ColumnPath;

use crate::{StoreError, fsx};

/// The borrower pseudonym of each row, as callers of [`open_columns`] name
/// it: column `pseudonym`, `FixedSizeBinary(16)`, up to store format 2;
/// since format 3 its two halves, [`PSEUDONYM_HI`] and [`PSEUDONYM_LO`].
pub(crate) const PSEUDONYM: &str = "pseudonym";
/// Since store format 3: the pseudonym's first 8 bytes as a big-endian
/// `Int64` (with [`PSEUDONYM_LO`], the last 8). The Parquet writer wraps
/// every fixed-size binary value in a reference-counted `Bytes` handle of
/// its own (a count up and down per row, a tenth of ingest's CPU time);
/// 64-bit integers are written as one slice.
pub(crate) const PSEUDONYM_HI: &str = "pseudonym_hi";
/// Since store format 3: the pseudonym's last 8 bytes, see [`PSEUDONYM_HI`].
pub(crate) const PSEUDONYM_LO: &str = "pseudonym_lo";
/// Column of title ids, dictionary-encoded `Utf8`.
pub(crate) const TITLE: &str = "title";
/// Column of work ids, dictionary-encoded `Utf8`; null where the work is
/// the title itself (always, without a works mapping), so that those rows
/// cost the writer neither a dictionary lookup nor a string.
pub(crate) const WORK: &str = "work";
/// Column of loan months, `Date32` of the first day of the month.
pub(crate) const MONTH: &str = "month";

/// Footer key of a file whose every row's work is its title (its `work`
/// column holds nulls only), so that readers skip the column: the Parquet
/// reader would rebuild a dictionary from such a column row by row (its
/// dictionary is empty), which doubled the time to read the file.
pub(crate) const WORKS_ARE_TITLES: &str = "alsoborrowed.works_are_titles";

/// `created_by` written into every file: fixed, so bytes do not change with
/// the parquet crate's version string.
pub(crate) const CREATED_BY: &str = "alsoborrowed-store format 3";

const PSEUDONYM_WIDTH: i32 = PSEUDONYM_LEN as i32;
const HALF: usize = PSEUDONYM_LEN / 2;
const READ_BATCH_ROWS: usize = 64 * 1024;

/// The Arrow schema of every data file.
pub(crate) fn schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        Arc::new(Schema::new(vec![
            Field::new(PSEUDONYM_HI, DataType::Int64, false),
            Field::new(PSEUDONYM_LO, DataType::Int64, false),
            Field::new(TITLE, dict.clone(), false),
            Field::new(WORK, dict, true),
            Field::new(MONTH, DataType::Date32, false),
        ]))
    });
    SCHEMA.clone()
}

/// Writer settings pinned explicitly so that equal input gives equal bytes;
/// `works_are_titles` marks a file whose `work` column is all nulls.
fn writer_properties(works_are_titles: bool) -> WriterProperties {
    let mut builder = WriterProperties::builder();
    for half in [PSEUDONYM_HI, PSEUDONYM_LO] {
        let half = ColumnPath::from(half);
        builder = builder
            // Pseudonyms are random bytes: min/max statistics and bloom
            // filters are useless for them, and dictionary pages barely pay
            // off.
            .set_column_dictionary_enabled(half.clone(), false)
            .set_column_statistics_enabled(half.clone(), EnabledStatistics::None)
            // In title order (`Loans::in_title_order`) a file's pseudonyms
            // have no runs left, and Snappy cannot shrink random bytes: it
            // only cost time.
            .set_column_compression(half, Compression::UNCOMPRESSED);
    }
    builder
        .set_key_value_metadata(works_are_titles.then(|| {
            vec![KeyValue::new(
                WORKS_ARE_TITLES.to_owned(),
                "true".to_owned(),
            )]
        }))
        .set_created_by(CREATED_BY.to_owned())
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1 << 20))
        .set_dictionary_enabled(true)
        // A big catalogue's title dictionary outgrows the 1 MiB default and
        // would fall back to plain strings.
        .set_dictionary_page_size_limit(16 << 20)
        // Every month holds titles from all over the catalogue, so their
        // min/max prune nothing, and computing them costs two string
        // comparisons per row and column: a sixth of ingest.
        .set_column_statistics_enabled(ColumnPath::from(TITLE), EnabledStatistics::None)
        .set_column_statistics_enabled(ColumnPath::from(WORK), EnabledStatistics::None)
        .build()
}

/// [`write_month_unsynced`], then the sync.
#[cfg(test)]
pub(crate) fn write_month(
    path: &Path,
    loans: &Loans,
    works: &WorkIndex,
    rows: &TitleOrder,
    month: LoanMonth,
) -> Result<(), StoreError> {
    let file = write_month_unsynced(path, loans, works, rows, month)?;
    file.sync_all().map_err(fsx::io_err(path))
}

/// Writes the rows `rows` (of `loans`, in the order given) of `month` to a new
/// owner-only file at `path`, and returns it unsynced: the caller syncs it
/// before the file is placed (ingest, on another thread, so that an
/// encoding thread never waits for the disk).
///
/// `loans` must be valid ([`Loans::validate`]) with fewer than 2^31 titles.
pub(crate) fn write_month_unsynced(
    path: &Path,
    loans: &Loans,
    works: &WorkIndex,
    rows: &TitleOrder,
    month: LoanMonth,
) -> Result<File, StoreError> {
    let batch = month_batch(loans, works, rows, month).map_err(|source| StoreError::Arrow {
        path: path.to_path_buf(),
        source,
    })?;
    let parquet_err = |source| StoreError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = fsx::create_new(path)?;
    let works_are_titles = batch
        .column_by_name(WORK)
        .is_some_and(|w| w.null_count() == batch.num_rows());
    let writer = ArrowWriter::try_new(
        BufWriter::new(file),
        schema(),
        Some(writer_properties(works_are_titles)),
    )
    .map_err(parquet_err)?;
    // The Arrow writer's file writer and column writers, with the schema and
    // footer it would write; the title and month columns are encoded here.
    let (mut writer, columns) = writer.into_serialized_writer().map_err(parquet_err)?;
    write_row_groups(&mut writer, &columns, &batch, month).map_err(parquet_err)?;
    writer
        .into_inner()
        .map_err(parquet_err)?
        .into_inner()
        .map_err(|e| fsx::io_err(path)(e.into_error()))
}

/// Writes `batch`, the loans of `month`, in row groups of the writer's row
/// count limit: the pseudonyms and works through the Arrow column writers,
/// the titles ([`title_chunk`]) and the month ([`month_chunk`]) as
/// dictionary pages and runs made here, without a lookup per row.
fn write_row_groups<W: Write + Send>(
    writer: &mut SerializedFileWriter<W>,
    columns: &ArrowRowGroupWriterFactory,
    batch: &RecordBatch,
    month: LoanMonth,
) -> Result<(), ParquetError> {
    let rows = batch.num_rows();
    let step = writer
        .properties()
        .max_row_group_row_count()
        .unwrap_or(rows)
        .max(1);
    let schema = schema();
    let title_at = schema
        .index_of(TITLE)
        .map_err(|e| ParquetError::General(e.to_string()))?;
    let titles = batch
        .column(title_at)
        .as_any()
        .downcast_ref::<DictionaryArray<Int32Type>>()
        .ok_or_else(|| ParquetError::General("title column is not a dictionary".into()))?;
    let title_values = titles
        .values()
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| ParquetError::General("title dictionary is not Utf8".into()))?;
    let title_descr = writer.schema_descr().column(title_at);
    let month_at = schema
        .index_of(MONTH)
        .map_err(|e| ParquetError::General(e.to_string()))?;
    let month_descr = writer.schema_descr().column(month_at);
    let props = Arc::clone(writer.properties());
    let mut slots = vec![u32::MAX; title_values.len()];
    for (group, start) in (0..rows).step_by(step).enumerate() {
        let len = step.min(rows - start);
        let mut row_group = writer.next_row_group()?;
        let leaves = columns.create_column_writers(group)?;
        for (at, mut leaf) in leaves.into_iter().enumerate() {
            let own = if at == title_at {
                let keys = &titles.keys().values()[start..start + len];
                Some(title_chunk(
                    &title_descr,
                    &props,
                    keys,
                    title_values,
                    &mut slots,
                )?)
            } else if at == month_at {
                Some(month_chunk(&month_descr, &props, month, len)?)
            } else {
                None
            };
            if let Some((bytes, close)) = own {
                row_group.append_column(&bytes, close)?;
                continue;
            }
            let array = batch.column(at).slice(start, len);
            for column in compute_leaves(schema.field(at), &array)? {
                leaf.write(&column)?;
            }
            leaf.close()?.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
    }
    Ok(())
}

/// One row group's title column chunk, as Parquet's dictionary encoding
/// writes it (a PLAIN dictionary page of the titles in the order of their
/// first row, then their keys), made from the batch's dictionary array
/// without hashing a title: the Arrow writer interns every row's string in
/// a dictionary of its own, a fifth of ingest's CPU time. `keys` index
/// `values`; `slots` holds `u32::MAX` for each value and is left so.
fn title_chunk(
    descr: &ColumnDescPtr,
    props: &WriterProperties,
    keys: &[i32],
    values: &StringArray,
    slots: &mut [u32],
) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
    let bad_key = || ParquetError::General("title key out of range".into());
    // The row group's dictionary, and its keys as runs: the rows are in
    // title order, so a title's rows are one run and the slots are visited
    // in order.
    let mut order: Vec<u32> = Vec::new();
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &k in keys {
        let slot = slots.get_mut(usize::try_from(k).map_err(|_| bad_key())?);
        let slot = slot.ok_or_else(bad_key)?;
        if *slot == u32::MAX {
            *slot = order.len() as u32;
            order.push(k as u32);
        }
        match runs.last_mut() {
            Some((key, len)) if *key == *slot => *len += 1,
            _ => runs.push((*slot, 1)),
        }
    }
    for &k in &order {
        slots[k as usize] = u32::MAX;
    }
    let mut dictionary = Vec::with_capacity(order.len() * 20);
    for &k in &order {
        let v = values.value(k as usize).as_bytes();
        dictionary.extend_from_slice(&(v.len() as u32).to_le_bytes());
        dictionary.extend_from_slice(v);
    }
    dictionary_chunk(descr, props, dictionary, order.len(), &runs, None)
}

/// One row group's month column chunk: its one value, one run, and the
/// value as minimum and maximum (which another engine prunes months by).
fn month_chunk(
    descr: &ColumnDescPtr,
    props: &WriterProperties,
    month: LoanMonth,
    rows: usize,
) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
    let rows =
        u32::try_from(rows).map_err(|_| ParquetError::General("row group too large".into()))?;
    let day = month.first_day_since_epoch();
    let statistics = Statistics::int32(Some(day), Some(day), None, Some(0), false);
    let value = day.to_le_bytes().to_vec();
    dictionary_chunk(descr, props, value, 1, &[(0, rows)], Some(statistics))
}

/// A dictionary-encoded column chunk of `entries` values, PLAIN-encoded in
/// `dictionary`, and one data page of `runs` (key, rows), as the column
/// writer would write it: the page encodings and codec of `props`, page
/// encoding statistics, an offset index, the chunk's `statistics` (no
/// page statistics). The keys are written as RLE runs only: the hybrid's
/// other kind, bit-packing, pays for keys without runs, and in title order
/// each title is one run.
fn dictionary_chunk(
    descr: &ColumnDescPtr,
    props: &WriterProperties,
    dictionary: Vec<u8>,
    entries: usize,
    runs: &[(u32, u32)],
    statistics: Option<Statistics>,
) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
    let too_large = || ParquetError::General("column chunk too large".into());
    let rows: u32 = runs
        .iter()
        .try_fold(0u32, |n, &(_, len)| n.checked_add(len))
        .ok_or_else(too_large)?;
    // The keys' bit width, then each run: header `len << 1` as a ULEB128,
    // the key in whole little-endian bytes.
    let width = u64::BITS - (entries.saturating_sub(1) as u64).leading_zeros();
    let value_bytes = width.div_ceil(8) as usize;
    let mut data = Vec::with_capacity(1 + runs.len() * (1 + value_bytes));
    data.push(width as u8);
    for &(key, len) in runs {
        let mut header = u64::from(len) << 1;
        while header >= 0x80 {
            data.push(header as u8 | 0x80);
            header >>= 7;
        }
        data.push(header as u8);
        data.extend_from_slice(&key.to_le_bytes()[..value_bytes]);
    }

    let codec = props.compression(descr.path());
    let compress = |raw: Vec<u8>| -> Result<(Bytes, usize), ParquetError> {
        let len = raw.len();
        match codec {
            Compression::UNCOMPRESSED => Ok((Bytes::from(raw), len)),
            Compression::SNAPPY => snap::raw::Encoder::new()
                .compress_vec(&raw)
                .map(|c| (Bytes::from(c), len))
                .map_err(|e| ParquetError::External(Box::new(e))),
            other => Err(ParquetError::NYI(format!(
                "store column compression {other}"
            ))),
        }
    };
    let entries = u32::try_from(entries).map_err(|_| too_large())?;
    let (dictionary, dictionary_len) = compress(dictionary)?;
    let (data, data_len) = compress(data)?;
    let dictionary_encoding = props.dictionary_page_encoding();
    let data_encoding = props.dictionary_data_page_encoding();
    let mut sink = TrackedWrite::new(Vec::new());
    let mut pages = SerializedPageWriter::new(&mut sink);
    let dictionary_spec = pages.write_page(CompressedPage::new(
        Page::DictionaryPage {
            buf: dictionary,
            num_values: entries,
            encoding: dictionary_encoding,
            is_sorted: false,
        },
        dictionary_len,
    ))?;
    let data_spec = pages.write_page(CompressedPage::new(
        Page::DataPage {
            buf: data,
            num_values: rows,
            encoding: data_encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        },
        data_len,
    ))?;
    pages.close()?;
    let stats = |page_type, encoding| PageEncodingStats {
        page_type,
        encoding,
        count: 1,
    };
    let mut metadata = ColumnChunkMetaData::builder(Arc::clone(descr))
        .set_compression(codec)
        .set_encodings_mask(EncodingMask::new_from_encodings(
            [dictionary_encoding, Encoding::RLE, data_encoding].iter(),
        ))
        .set_page_encoding_stats(vec![
            stats(PageType::DICTIONARY_PAGE, dictionary_encoding),
            stats(PageType::DATA_PAGE, data_encoding),
        ])
        .set_total_compressed_size(
            (dictionary_spec.compressed_size + data_spec.compressed_size) as i64,
        )
        .set_total_uncompressed_size(
            (dictionary_spec.uncompressed_size + data_spec.uncompressed_size) as i64,
        )
        .set_num_values(i64::from(rows))
        .set_dictionary_page_offset(Some(dictionary_spec.offset as i64))
        .set_data_page_offset(data_spec.offset as i64);
    if let Some(statistics) = statistics {
        metadata = metadata.set_statistics(statistics);
    }
    let metadata = metadata.build()?;
    let offset_index = OffsetIndexMetaData {
        page_locations: vec![PageLocation {
            offset: data_spec.offset as i64,
            compressed_page_size: data_spec.bytes_written as i32,
            first_row_index: 0,
        }],
        unencoded_byte_array_data_bytes: None,
    };
    let bytes_written = sink.bytes_written() as u64;
    let close = ColumnCloseResult {
        bytes_written,
        rows_written: u64::from(rows),
        metadata,
        bloom_filter: None,
        column_index: None,
        offset_index: Some(offset_index),
    };
    Ok((Bytes::from(sink.into_inner()?), close))
}

/// Each dictionary title's work as a number, computed once per batch so that
/// the months of a batch group titles by work without hashing work names.
#[derive(Debug)]
pub(crate) struct WorkIndex {
    of_title: Vec<u32>,
    /// Whether each dictionary title is its own work (stored as a null).
    own: Vec<bool>,
    works: usize,
}

impl WorkIndex {
    /// Numbers the works of `loans`' dictionary in first-appearance order.
    pub(crate) fn of(loans: &Loans) -> WorkIndex {
        let mut index: HashMap<&str, u32> = HashMap::with_capacity(loans.work_ids.len());
        let of_title = loans
            .work_ids
            .iter()
            .map(|w| {
                let next = index.len() as u32;
                *index.entry(w.as_str()).or_insert(next)
            })
            .collect();
        let own = loans
            .title_ids
            .iter()
            .zip(&loans.work_ids)
            .map(|(t, w)| t == w)
            .collect();
        WorkIndex {
            of_title,
            own,
            works: index.len(),
        }
    }
}

/// Builds the record batch of one month with month-local dictionaries in
/// first-appearance order (deterministic for a given batch).
fn month_batch(
    loans: &Loans,
    works: &WorkIndex,
    rows: &TitleOrder,
    month: LoanMonth,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let n = rows.len();
    // Each row's pseudonym is a cache miss at a random place (the rows are
    // in title order): fetched in a loop of their own, many misses are in
    // flight at once instead of the few the title bookkeeping leaves room for.
    let (hi, lo): (Vec<i64>, Vec<i64>) = rows
        .borrowers
        .iter()
        .map(|&b| halves(&loans.borrower_pseudonyms[b as usize]))
        .unzip();
    let mut title_keys = Vec::with_capacity(n);
    // Below zero: the title is its own work, a null.
    let mut work_keys: Vec<i32> = Vec::with_capacity(n);
    let mut local_of_title = vec![u32::MAX; loans.title_ids.len()];
    let mut title_values: Vec<&str> = Vec::new();
    let mut work_of_local: Vec<i32> = Vec::new();
    let mut work_values: Vec<&str> = Vec::new();
    let mut local_of_work = vec![u32::MAX; works.works];
    for &t in &rows.titles {
        let t = t as usize;
        if local_of_title[t] == u32::MAX {
            local_of_title[t] = title_values.len() as u32;
            title_values.push(&loans.title_ids[t]);
            if works.own[t] {
                work_of_local.push(-1);
            } else {
                let w = works.of_title[t] as usize;
                if local_of_work[w] == u32::MAX {
                    local_of_work[w] = work_values.len() as u32;
                    work_values.push(&loans.work_ids[t]);
                }
                work_of_local.push(local_of_work[w] as i32);
            }
        }
        let local = local_of_title[t];
        title_keys.push(local as i32);
        work_keys.push(work_of_local[local as usize]);
    }
    let titles = DictionaryArray::<Int32Type>::try_new(
        Int32Array::from(title_keys),
        Arc::new(StringArray::from(title_values)),
    )?;
    let own = NullBuffer::from_iter(work_keys.iter().map(|&k| k >= 0));
    for k in &mut work_keys {
        *k = (*k).max(0);
    }
    let works = DictionaryArray::<Int32Type>::try_new(
        Int32Array::new(work_keys.into(), Some(own).filter(|n| n.null_count() > 0)),
        Arc::new(StringArray::from(work_values)),
    )?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(hi)),
        Arc::new(Int64Array::from(lo)),
        Arc::new(titles),
        Arc::new(works),
        Arc::new(Date32Array::from(vec![month.first_day_since_epoch(); n])),
    ];
    RecordBatch::try_new(schema(), columns)
}

/// A pseudonym as the big-endian halves store format 3 writes.
fn halves(p: &Pseudonym) -> (i64, i64) {
    let (hi, lo) = p.as_bytes().split_at(HALF);
    let half = |b: &[u8]| {
        let mut a = [0u8; HALF];
        a.copy_from_slice(b);
        i64::from_be_bytes(a)
    };
    (half(hi), half(lo))
}

/// The loans of one data file, with a file-local title dictionary.
#[derive(Debug, Default)]
pub(crate) struct FilePart {
    /// The borrower of each row.
    pub borrowers: Borrowers,
    /// Title of each row, an index into `dict`.
    pub titles: Vec<u32>,
    /// Each local title, in first-appearance order. A title may appear more
    /// than once (once per column chunk dictionary holding it); the first
    /// entry is the one of its first row.
    pub dict: Vec<Local>,
}

/// The borrowers of a [`FilePart`]'s rows.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Borrowers {
    /// Read from the file: each row's index into `dictionary`, the file's
    /// pseudonyms each once, in order of first appearance.
    Own {
        /// Each row's index into `dictionary`.
        rows: Vec<u32>,
        /// The file's pseudonyms, each once.
        dictionary: Vec<Pseudonym>,
    },
    /// Made from loans in memory: each row's index into their borrower
    /// dictionary, taken as it is.
    OfLoans(Vec<u32>),
}

impl Default for Borrowers {
    fn default() -> Self {
        Borrowers::OfLoans(Vec::new())
    }
}

impl Borrowers {
    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        match self {
            Borrowers::Own { rows, .. } | Borrowers::OfLoans(rows) => rows.len(),
        }
    }

    /// Each row's pseudonym; `loans` are those an [`Borrowers::OfLoans`]
    /// part was made from.
    pub(crate) fn pseudonyms<'a>(
        &'a self,
        loans: &'a Loans,
    ) -> Box<dyn Iterator<Item = Pseudonym> + 'a> {
        match self {
            Borrowers::Own { rows, dictionary } => {
                Box::new(rows.iter().map(|&b| dictionary[b as usize]))
            }
            Borrowers::OfLoans(rows) => {
                Box::new(rows.iter().map(|&b| loans.borrower_pseudonyms[b as usize]))
            }
        }
    }
}

/// A local title of a [`FilePart`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Local {
    /// A title the caller already knew, by the caller's id: resolved while
    /// reading, so that its strings are never copied out of the file.
    Known(u32),
    /// A title the caller did not know, with the work of its first row.
    New(String, String),
    /// A title of the loans a part was made from in memory, by its index
    /// in their dictionary: no string is looked up or copied per file.
    OfLoans(u32),
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Opens `path` reading only the named columns (`work` only where the
/// file may hold a work that is not its row's title: see
/// [`WORKS_ARE_TITLES`]; [`PSEUDONYM`] as the file stores it); says whether
/// `work` is read.
fn open_columns(
    path: &Path,
    columns: &[&str],
) -> Result<(ParquetRecordBatchReader, bool), StoreError> {
    let parquet_err = |source| StoreError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = fsx::open_nofollow(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err)?;
    let has = |c: &str| builder.schema().field_with_name(c).is_ok();
    let halves = has(PSEUDONYM_HI) && has(PSEUDONYM_LO);
    for c in columns {
        let readable = has(c) || (*c == PSEUDONYM && halves);
        if !readable {
            return Err(corrupt(path, format!("missing column {c}")));
        }
    }
    let titles_only = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .is_some_and(|kv| {
            kv.iter()
                .any(|e| e.key == WORKS_ARE_TITLES && e.value.as_deref() == Some("true"))
        });
    let read: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|&c| !(titles_only && c == WORK))
        .flat_map(|c| match c {
            PSEUDONYM if halves => vec![PSEUDONYM_HI, PSEUDONYM_LO],
            c => vec![c],
        })
        .collect();
    let mask = ProjectionMask::columns(builder.parquet_schema(), read.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(parquet_err)?;
    Ok((reader, read.contains(&WORK)))
}

fn column<'a>(path: &Path, batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, StoreError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| corrupt(path, format!("missing column {name}")))?;
    if col.null_count() > 0 {
        return Err(corrupt(path, format!("column {name} holds nulls")));
    }
    Ok(col)
}

/// The pseudonyms of a batch of rows, as the file stores them.
enum PseudonymCol<'a> {
    /// Store formats 1 and 2: `FixedSizeBinary(16)`.
    Bytes(&'a FixedSizeBinaryArray),
    /// Since store format 3: big-endian halves, as many of each.
    Halves(&'a [i64], &'a [i64]),
}

impl<'a> PseudonymCol<'a> {
    fn new(path: &Path, batch: &'a RecordBatch) -> Result<Self, StoreError> {
        let int64 = |name| -> Result<&'a [i64], StoreError> {
            Ok(column(path, batch, name)?
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| corrupt(path, format!("column {name} is not Int64")))?
                .values())
        };
        if batch.column_by_name(PSEUDONYM).is_none() {
            let (hi, lo) = (int64(PSEUDONYM_HI)?, int64(PSEUDONYM_LO)?);
            if hi.len() != lo.len() {
                return Err(corrupt(path, "the pseudonym halves differ in length"));
            }
            return Ok(PseudonymCol::Halves(hi, lo));
        }
        column(path, batch, PSEUDONYM)?
            .as_any()
            .downcast_ref::<FixedSizeBinaryArray>()
            .filter(|a| a.value_length() == PSEUDONYM_WIDTH)
            .map(PseudonymCol::Bytes)
            .ok_or_else(|| corrupt(path, "column pseudonym is not 16-byte fixed-size binary"))
    }

    fn len(&self) -> usize {
        match self {
            PseudonymCol::Bytes(a) => a.len(),
            PseudonymCol::Halves(hi, _) => hi.len(),
        }
    }

    /// Row `i`'s pseudonym; `i` is below [`PseudonymCol::len`].
    fn at(&self, i: usize) -> Pseudonym {
        let mut b = [0u8; PSEUDONYM_LEN];
        match self {
            // The width was checked in `new`.
            PseudonymCol::Bytes(a) => b.copy_from_slice(a.value(i)),
            PseudonymCol::Halves(hi, lo) => {
                let (h, l) = b.split_at_mut(HALF);
                h.copy_from_slice(&hi[i].to_be_bytes());
                l.copy_from_slice(&lo[i].to_be_bytes());
            }
        }
        Pseudonym(b)
    }
}

/// A string column as stored: dictionary-encoded (our files) or plain (files
/// rewritten by other tools).
enum StrCol<'a> {
    Dict {
        keys: &'a [i32],
        values: &'a StringArray,
    },
    Plain(&'a StringArray),
}

/// The work column: each row's work, null (since store format 2) where the
/// work is the row's title.
struct WorkCol<'a> {
    /// `None` for a file whose every work is its title (not read).
    values: Option<StrCol<'a>>,
    own: Option<&'a NullBuffer>,
}

impl<'a> WorkCol<'a> {
    /// Every row's work is its title.
    const TITLES: WorkCol<'static> = WorkCol {
        values: None,
        own: None,
    };

    fn new(path: &Path, batch: &'a RecordBatch) -> Result<Self, StoreError> {
        let col = batch
            .column_by_name(WORK)
            .ok_or_else(|| corrupt(path, format!("missing column {WORK}")))?;
        Ok(WorkCol {
            values: Some(StrCol::of(path, col, WORK)?),
            own: col.nulls(),
        })
    }

    /// The work of row `i`, whose title is `title`.
    fn at(&self, i: usize, title: &'a str) -> Option<&'a str> {
        match (&self.values, self.own) {
            (None, _) => Some(title),
            (Some(_), Some(own)) if i < own.len() && own.is_null(i) => Some(title),
            (Some(values), _) => values.str_at(i),
        }
    }
}

impl<'a> StrCol<'a> {
    fn new(path: &Path, batch: &'a RecordBatch, name: &str) -> Result<Self, StoreError> {
        StrCol::of(path, column(path, batch, name)?, name)
    }

    fn of(path: &Path, col: &'a ArrayRef, name: &str) -> Result<Self, StoreError> {
        if let Some(s) = col.as_any().downcast_ref::<StringArray>() {
            return Ok(StrCol::Plain(s));
        }
        let dict = col
            .as_any()
            .downcast_ref::<DictionaryArray<Int32Type>>()
            .ok_or_else(|| corrupt(path, format!("column {name} is not a string column")))?;
        let values = dict
            .values()
            .as_any()
            .downcast_ref::<StringArray>()
            .filter(|v| v.null_count() == 0)
            .ok_or_else(|| corrupt(path, format!("column {name} is not a string column")))?;
        Ok(StrCol::Dict {
            keys: dict.keys().values(),
            values,
        })
    }

    fn str_at(&self, i: usize) -> Option<&'a str> {
        match self {
            StrCol::Plain(s) => (i < s.len()).then(|| s.value(i)),
            StrCol::Dict { keys, values } => {
                let k = usize::try_from(*keys.get(i)?).ok()?;
                (k < values.len()).then(|| values.value(k))
            }
        }
    }
}

/// The local entry of a title first seen with `work`: the caller's id when
/// `known` has one, else the title's strings.
fn local(title: &str, work: Option<&str>, known: &dyn Fn(&str) -> Option<u32>) -> Option<Local> {
    Some(match known(title) {
        Some(id) => Local::Known(id),
        None => Local::New(title.to_owned(), work?.to_owned()),
    })
}

/// The [`FilePart`] that [`read_loans`] gives for a file [`write_month`]
/// wrote from the rows `rows` of `loans`, made from `loans` in memory, with
/// each title as [`Local::OfLoans`].
///
/// Local titles are numbered in first-appearance order by dictionary index,
/// as the file's dictionary is. `None` if a row or its title is out of range
/// (loans other than the ones ingested): the caller then reads the file.
pub(crate) fn part_of_rows(loans: &Loans, rows: &[u32]) -> Option<FilePart> {
    let (titles, pseudonyms) = (
        loans.title_ids.len().min(loans.work_ids.len()),
        loans.borrower_pseudonyms.len(),
    );
    let mut local_of_title = vec![u32::MAX; titles];
    let mut borrowers = Vec::with_capacity(rows.len());
    let mut part = FilePart {
        titles: Vec::with_capacity(rows.len()),
        ..FilePart::default()
    };
    // Checked as they are read, in one pass: rows sit at random places of
    // the batch's columns (the file is in title order), a cache miss each.
    for &r in rows {
        let r = r as usize;
        let (&b, &t) = loans.borrowers.get(r).zip(loans.titles.get(r))?;
        if b as usize >= pseudonyms {
            return None;
        }
        borrowers.push(b);
        let local = local_of_title.get_mut(t as usize)?;
        if *local == u32::MAX {
            // Below 2^31: the store takes fewer than 2^31 titles a batch.
            *local = part.dict.len() as u32;
            part.dict.push(Local::OfLoans(t));
        }
        part.titles.push(*local);
    }
    part.borrowers = Borrowers::OfLoans(borrowers);
    Some(part)
}

/// Reads the pseudonym, title and work columns of a data file that the
/// manifest says holds `rows` rows. `known` gives the caller's id of a title
/// it already holds, so that only new titles are copied out.
pub(crate) fn read_loans(
    path: &Path,
    rows: u64,
    known: &dyn Fn(&str) -> Option<u32>,
) -> Result<FilePart, StoreError> {
    let cap = usize::try_from(rows).unwrap_or(0);
    let mut part = FilePart {
        titles: Vec::with_capacity(cap),
        ..FilePart::default()
    };
    // The file's borrowers numbered here, on the reading thread, so that a
    // caller merging files looks up each pseudonym once a file, not a row.
    let mut borrowers: Vec<u32> = Vec::with_capacity(cap);
    let mut numbering = BorrowerNumbering::default();
    // Local ids of the titles of plain string columns: one allocation per
    // distinct title, never per row.
    let mut plain: HashMap<String, u32> = HashMap::new();
    // Dictionary keys of the current batch mapped to local title ids; the
    // reader hands out the same dictionary for every batch of a column
    // chunk, so the mapping is reused while the dictionary stays the same.
    let mut remap: Vec<u32> = Vec::new();
    // The dictionary `remap` belongs to, kept alive (a cheap Arc clone) so its
    // buffers cannot be freed and reused by a later, different dictionary at
    // the same addresses while the pointer comparison below trusts them.
    let mut remap_for: Option<StringArray> = None;
    let bad_title = || corrupt(path, "column title refers past its dictionary");
    let too_many = || corrupt(path, "too many distinct titles");
    let (reader, reads_work) = open_columns(path, &[PSEUDONYM, TITLE, WORK])?;
    for batch in reader {
        let batch = batch.map_err(|source| StoreError::Arrow {
            path: path.to_path_buf(),
            source,
        })?;
        let pseudonyms = PseudonymCol::new(path, &batch)?;
        let titles = StrCol::new(path, &batch, TITLE)?;
        let works = if reads_work {
            WorkCol::new(path, &batch)?
        } else {
            WorkCol::TITLES
        };
        let n = batch.num_rows();
        if pseudonyms.len() != n {
            return Err(corrupt(path, "column pseudonym differs in length"));
        }
        for i in 0..n {
            let b = numbering
                .number(pseudonyms.at(i))
                .ok_or_else(|| corrupt(path, "too many distinct pseudonyms"))?;
            borrowers.push(b);
        }
        match titles {
            StrCol::Plain(s) => {
                for i in 0..n {
                    let title = s.value(i);
                    let id = match plain.get(title) {
                        Some(&id) => id,
                        None => {
                            let id = u32::try_from(part.dict.len()).map_err(|_| too_many())?;
                            part.dict.push(
                                local(title, works.at(i, title), known).ok_or_else(bad_title)?,
                            );
                            plain.insert(title.to_owned(), id);
                            id
                        }
                    };
                    part.titles.push(id);
                }
            }
            StrCol::Dict { keys, values } => {
                let same = |d: &StringArray| {
                    d.values().as_ptr() == values.values().as_ptr()
                        && d.value_offsets().as_ptr() == values.value_offsets().as_ptr()
                        && d.len() == values.len()
                };
                if !remap_for.as_ref().is_some_and(same) {
                    remap.clear();
                    remap.resize(values.len(), u32::MAX);
                    remap_for = Some(values.clone());
                }
                for (i, &k) in keys.iter().enumerate().take(n) {
                    let k = usize::try_from(k).map_err(|_| bad_title())?;
                    let slot = remap.get_mut(k).ok_or_else(bad_title)?;
                    if *slot == u32::MAX {
                        // A title in two column chunks gets two local ids;
                        // the caller's merge maps both to one title.
                        let id = u32::try_from(part.dict.len())
                            .ok()
                            .filter(|&id| id != u32::MAX)
                            .ok_or_else(too_many)?;
                        let title = values.value(k);
                        part.dict
                            .push(local(title, works.at(i, title), known).ok_or_else(bad_title)?);
                        *slot = id;
                    }
                    part.titles.push(*slot);
                }
            }
        }
    }
    if borrowers.len() as u64 != rows {
        return Err(corrupt(
            path,
            format!(
                "file holds {} rows but the manifest says {rows}",
                borrowers.len()
            ),
        ));
    }
    part.borrowers = Borrowers::Own {
        rows: borrowers,
        dictionary: numbering.into_pseudonyms(),
    };
    Ok(part)
}

/// Calls `each` with every pseudonym of a data file, reading only that column.
pub(crate) fn for_each_pseudonym(
    path: &Path,
    rows: u64,
    mut each: impl FnMut(Pseudonym),
) -> Result<(), StoreError> {
    let mut seen = 0u64;
    for batch in open_columns(path, &[PSEUDONYM])?.0 {
        let batch = batch.map_err(|source| StoreError::Arrow {
            path: path.to_path_buf(),
            source,
        })?;
        let col = PseudonymCol::new(path, &batch)?;
        for i in 0..col.len() {
            each(col.at(i));
        }
        seen += col.len() as u64;
    }
    if seen != rows {
        return Err(corrupt(
            path,
            format!("file holds {seen} rows but the manifest says {rows}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_buffer::Buffer;
    use proptest::prelude::*;

    /// Column `name` of `b` as the dictionary array it is, and its strings.
    fn string_dictionary<'a>(
        b: &'a RecordBatch,
        name: &str,
    ) -> (&'a DictionaryArray<Int32Type>, &'a StringArray) {
        let d = b
            .column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<DictionaryArray<Int32Type>>()
            .unwrap();
        let v = d.values().as_any().downcast_ref::<StringArray>().unwrap();
        (d, v)
    }

    /// `batch` written by the Arrow writer alone and by the store's writer
    /// (titles encoded by [`title_chunk`]), in row groups of `group_rows`.
    fn written_both_ways(batch: &RecordBatch, group_rows: usize) -> [Bytes; 2] {
        let props = || {
            writer_properties(false)
                .into_builder()
                .set_max_row_group_row_count(Some(group_rows))
                .build()
        };
        let mut arrow = ArrowWriter::try_new(Vec::new(), schema(), Some(props())).unwrap();
        arrow.write(batch).unwrap();
        let arrow = arrow.into_inner().unwrap();
        let ours = ArrowWriter::try_new(Vec::new(), schema(), Some(props())).unwrap();
        let (mut writer, columns) = ours.into_serialized_writer().unwrap();
        write_row_groups(
            &mut writer,
            &columns,
            batch,
            LoanMonth::new(2024, 1).unwrap(),
        )
        .unwrap();
        [
            Bytes::from(arrow),
            Bytes::from(writer.into_inner().unwrap()),
        ]
    }

    /// Every column of a file as the generic Parquet reader gives it, the
    /// titles as strings, and each row group's row count and statistics.
    #[allow(clippy::type_complexity)]
    fn read_generic(
        file: Bytes,
    ) -> (
        Vec<String>,
        Vec<RecordBatch>,
        Vec<(i64, Vec<Option<Statistics>>)>,
    ) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let groups = builder
            .metadata()
            .row_groups()
            .iter()
            .map(|g| {
                let stats = g.columns().iter().map(|c| c.statistics().cloned());
                (g.num_rows(), stats.collect())
            })
            .collect();
        let mut titles = Vec::new();
        let mut others = Vec::new();
        for b in builder.build().unwrap() {
            let b = b.unwrap();
            let (t, v) = string_dictionary(&b, TITLE);
            titles.extend(
                t.keys()
                    .values()
                    .iter()
                    .map(|&k| v.value(k as usize).to_owned()),
            );
            others.push(b.project(&[0, 1, 4]).unwrap());
        }
        (titles, others, groups)
    }

    /// A month of `keys.len()` rows whose row `i` has title `keys[i]` of
    /// `titles` distinct ones (not necessarily in title order).
    fn month_of(keys: &[u32], titles: usize) -> (Loans, TitleOrder) {
        let m = LoanMonth::new(2024, 1).unwrap();
        let pseudonyms: Vec<Pseudonym> = (0..keys.len())
            .map(|i| Pseudonym(std::array::from_fn(|j| (i * 7 + j) as u8)))
            .collect();
        let names: Vec<String> = (0..titles).map(|t| format!("title-{t}")).collect();
        let loans = Loans::from_rows(
            &pseudonyms,
            keys.to_vec(),
            vec![m; keys.len()],
            names.clone(),
            names,
        );
        let order = loans.carried((0..keys.len() as u32).collect());
        (loans, order)
    }

    fn assert_reads_alike(keys: &[u32], titles: usize, group_rows: usize) {
        let (loans, order) = month_of(keys, titles);
        let batch = month_batch(&loans, &WorkIndex::of(&loans), &order, loans.months[0]).unwrap();
        let [arrow, ours] = written_both_ways(&batch, group_rows);
        let (arrow, ours) = (read_generic(arrow), read_generic(ours));
        let expected: Vec<String> = keys.iter().map(|&k| format!("title-{k}")).collect();
        assert_eq!(ours.0, expected);
        assert_eq!(ours, arrow);
    }

    proptest! {
        /// The store's title chunks read, with the generic reader, exactly
        /// as the Arrow writer's: in or out of title order, one or many
        /// titles (key widths 0 to 9 bits), runs across row groups.
        #[test]
        fn title_chunks_read_as_the_arrow_writers(
            keys in prop::collection::vec(0u32..600, 1..400),
            sorted in any::<bool>(),
            group_rows in 1usize..130,
        ) {
            let mut keys = keys;
            if sorted {
                keys.sort_unstable();
            }
            assert_reads_alike(&keys, 600, group_rows);
        }
    }

    #[test]
    fn title_chunks_hold_wide_keys_and_long_runs() {
        // 70,000 titles (17-bit keys) in title order, then one title's run
        // of 300 rows (a two-byte run header), in groups of 2^16 rows.
        let mut keys: Vec<u32> = (0..70_000).collect();
        keys.extend(std::iter::repeat_n(69_999, 300));
        assert_reads_alike(&keys, 70_000, 1 << 16);
        assert_reads_alike(&[5; 1000], 10, 1 << 20);
    }

    fn sample() -> Loans {
        let m = LoanMonth::new(2024, 1).unwrap();
        Loans::from_rows(
            &[Pseudonym([1; 16]), Pseudonym([2; 16]), Pseudonym([1; 16])],
            vec![2, 0, 2],
            vec![m; 3],
            vec!["t0".into(), "t1".into(), "t2".into()],
            vec!["w0".into(), "w1".into(), "w0".into()],
        )
    }

    #[test]
    fn month_batch_uses_local_dictionaries_in_first_appearance_order() {
        let loans = sample();
        let m = loans.months[0];
        let b = month_batch(
            &loans,
            &WorkIndex::of(&loans),
            &loans.carried(vec![0, 1, 2]),
            m,
        )
        .unwrap();
        assert_eq!(b.schema(), schema());
        let half = |name| {
            let c = b.column_by_name(name).unwrap();
            c.as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        };
        // Big-endian halves of [1; 16], [2; 16] and [1; 16].
        let ones = i64::from_be_bytes([1; 8]);
        let twos = i64::from_be_bytes([2; 8]);
        assert_eq!(half(PSEUDONYM_HI), [ones, twos, ones]);
        assert_eq!(half(PSEUDONYM_LO), [ones, twos, ones]);
        let (titles, values) = string_dictionary(&b, TITLE);
        assert_eq!(titles.keys().values().to_vec(), [0, 1, 0]);
        assert_eq!(values.iter().flatten().collect::<Vec<_>>(), ["t2", "t0"]);
        let (works, work_values) = string_dictionary(&b, WORK);
        // t2 and t0 share work w0: one dictionary entry.
        assert_eq!(works.keys().values().to_vec(), [0, 0, 0]);
        assert_eq!(work_values.len(), 1);
    }

    #[test]
    fn written_file_reads_back_and_counts_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.parquet");
        let loans = sample();
        let works = WorkIndex::of(&loans);
        write_month(
            &p,
            &loans,
            &works,
            &loans.carried(vec![0, 1, 2]),
            loans.months[0],
        )
        .unwrap();
        let part = read_loans(&p, 3, &|_| None).unwrap();
        assert_eq!(
            part.borrowers,
            Borrowers::Own {
                rows: vec![0, 1, 0],
                dictionary: vec![Pseudonym([1; 16]), Pseudonym([2; 16])]
            }
        );
        assert_eq!(
            part.borrowers.pseudonyms(&loans).collect::<Vec<_>>(),
            loans.row_pseudonyms().collect::<Vec<_>>()
        );
        assert_eq!(part.titles, [0, 1, 0]);
        assert_eq!(
            part.dict,
            [
                Local::New("t2".into(), "w0".into()),
                Local::New("t0".into(), "w0".into())
            ]
        );
        // Titles the caller knows come back as its ids, without strings.
        let known = |t: &str| (t == "t0").then_some(7);
        let part = read_loans(&p, 3, &known).unwrap();
        assert_eq!(
            part.dict,
            [Local::New("t2".into(), "w0".into()), Local::Known(7)]
        );
        let mut n = 0;
        for_each_pseudonym(&p, 3, |_| n += 1).unwrap();
        assert_eq!(n, 3);
        assert!(matches!(
            read_loans(&p, 4, &|_| None),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            for_each_pseudonym(&p, 2, |_| ()),
            Err(StoreError::Corrupt { .. })
        ));
    }

    /// The halves are the pseudonym's bytes 0-7 and 8-15 read big-endian
    /// (what another engine is told), and read back to the same bytes.
    #[test]
    fn pseudonym_halves_are_big_endian_and_read_back() {
        let p = Pseudonym(std::array::from_fn(|i| i as u8 * 0x11));
        let (hi, lo) = halves(&p);
        assert_eq!(hi, 0x0011_2233_4455_6677);
        assert_eq!(lo, 0x8899_aabb_ccdd_eeff_u64 as i64);
        let col = PseudonymCol::Halves(&[hi], &[lo]);
        assert_eq!(col.len(), 1);
        assert_eq!(col.at(0), p);
    }

    /// Loans where t0 and t1 are their own works and t2 belongs to work w0.
    fn own_works() -> Loans {
        let m = LoanMonth::new(2024, 1).unwrap();
        Loans::from_rows(
            &[Pseudonym([1; 16]), Pseudonym([2; 16]), Pseudonym([3; 16])],
            vec![2, 0, 1],
            vec![m; 3],
            vec!["t0".into(), "t1".into(), "t2".into()],
            vec!["t0".into(), "t1".into(), "w0".into()],
        )
    }

    #[test]
    fn a_title_that_is_its_own_work_is_stored_as_a_null_work() {
        let loans = own_works();
        let b = month_batch(
            &loans,
            &WorkIndex::of(&loans),
            &loans.carried(vec![0, 1, 2]),
            loans.months[0],
        )
        .unwrap();
        let works = b.column_by_name(WORK).unwrap();
        assert_eq!(
            (0..3).map(|i| works.is_null(i)).collect::<Vec<_>>(),
            [false, true, true]
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.parquet");
        write_month(
            &p,
            &loans,
            &WorkIndex::of(&loans),
            &loans.carried(vec![0, 1, 2]),
            loans.months[0],
        )
        .unwrap();
        let part = read_loans(&p, 3, &|_| None).unwrap();
        assert_eq!(
            part.dict,
            [
                Local::New("t2".into(), "w0".into()),
                Local::New("t0".into(), "t0".into()),
                Local::New("t1".into(), "t1".into())
            ]
        );
        assert!(!works_are_titles(&p));
        // Without a works mapping the column is all nulls, and the footer
        // says so, so that readers skip it.
        let mut plain = own_works();
        plain.work_ids = plain.title_ids.clone();
        let b = month_batch(
            &plain,
            &WorkIndex::of(&plain),
            &plain.carried(vec![0, 1, 2]),
            plain.months[0],
        )
        .unwrap();
        assert_eq!(b.column_by_name(WORK).unwrap().null_count(), 3);
        let q = dir.path().join("titles.parquet");
        write_month(
            &q,
            &plain,
            &WorkIndex::of(&plain),
            &plain.carried(vec![0, 1, 2]),
            plain.months[0],
        )
        .unwrap();
        assert!(works_are_titles(&q));
        assert!(!open_columns(&q, &[PSEUDONYM, TITLE, WORK]).unwrap().1);
        let expected = [
            Local::New("t2".into(), "t2".into()),
            Local::New("t0".into(), "t0".into()),
            Local::New("t1".into(), "t1".into()),
        ];
        assert_eq!(read_loans(&q, 3, &|_| None).unwrap().dict, expected);
        // The same file without the footer key (rewritten by another tool)
        // reads the same, the column read and its nulls taken as titles.
        let r = dir.path().join("no-key.parquet");
        let mut w =
            ArrowWriter::try_new(std::fs::File::create(&r).unwrap(), schema(), None).unwrap();
        w.write(&b).unwrap();
        w.close().unwrap();
        assert!(open_columns(&r, &[PSEUDONYM, TITLE, WORK]).unwrap().1);
        assert_eq!(read_loans(&r, 3, &|_| None).unwrap().dict, expected);
    }

    fn works_are_titles(path: &Path) -> bool {
        let file = std::fs::File::open(path).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let kv = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned();
        kv.unwrap_or_default()
            .iter()
            .any(|e| e.key == WORKS_ARE_TITLES)
    }

    /// Store format 1 wrote every row's work, its title included, and
    /// format 2 a null for a title that is its own work; both stored each
    /// pseudonym as 16-byte fixed-size binary. Such files read exactly as
    /// the format 3 file of the same rows.
    #[test]
    fn format_1_and_2_files_read_alike() {
        let loans = own_works();
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.parquet");
        write_month(
            &new,
            &loans,
            &WorkIndex::of(&loans),
            &loans.carried(vec![0, 1, 2]),
            loans.months[0],
        )
        .unwrap();
        let new = read_loans(&new, 3, &|_| None).unwrap();
        let rows = [0, 1, 2];
        let titles = ["t2", "t0", "t1"];
        for (format, works) in [
            (1, [Some("w0"), Some("t0"), Some("t1")]),
            (2, [Some("w0"), None, None]),
        ] {
            let old = dir.path().join(format!("format-{format}.parquet"));
            let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
            let schema = Arc::new(Schema::new(vec![
                Field::new(PSEUDONYM, DataType::FixedSizeBinary(16), false),
                Field::new(TITLE, dict.clone(), false),
                Field::new(WORK, dict, format == 2),
                Field::new(MONTH, DataType::Date32, false),
            ]));
            let mut pseudonyms = Vec::new();
            for r in rows {
                pseudonyms.extend_from_slice(loans.pseudonym(r).as_bytes());
            }
            let cols: Vec<ArrayRef> = vec![
                Arc::new(
                    FixedSizeBinaryArray::try_new(16, Buffer::from_vec(pseudonyms), None).unwrap(),
                ),
                Arc::new(titles.into_iter().collect::<DictionaryArray<Int32Type>>()),
                Arc::new(works.into_iter().collect::<DictionaryArray<Int32Type>>()),
                Arc::new(Date32Array::from(vec![
                    loans.months[0]
                        .first_day_since_epoch();
                    3
                ])),
            ];
            let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
            let mut w =
                ArrowWriter::try_new(std::fs::File::create(&old).unwrap(), schema, None).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            let old_part = read_loans(&old, 3, &|_| None).unwrap();
            assert_eq!(old_part.dict, new.dict, "format {format}");
            assert_eq!(old_part.titles, new.titles, "format {format}");
            assert_eq!(old_part.borrowers, new.borrowers, "format {format}");
            let mut seen = Vec::new();
            for_each_pseudonym(&old, 3, |p| seen.push(p)).unwrap();
            let want: Vec<Pseudonym> = rows.iter().map(|&r| loans.pseudonym(r)).collect();
            assert_eq!(seen, want, "format {format}");
        }
    }

    /// A file with only one pseudonym half, or a half of another type, is
    /// corrupt, not misread.
    #[test]
    fn a_broken_pseudonym_column_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, fields: Vec<Field>, cols: Vec<ArrayRef>| {
            let p = dir.path().join(name);
            let mut fields = fields;
            fields.push(Field::new(TITLE, DataType::Utf8, false));
            let mut cols = cols;
            cols.push(Arc::new(StringArray::from(vec!["a"])));
            let schema = Arc::new(Schema::new(fields));
            let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
            let mut w =
                ArrowWriter::try_new(std::fs::File::create(&p).unwrap(), schema, None).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            p
        };
        let one_half = write(
            "one-half.parquet",
            vec![Field::new(PSEUDONYM_HI, DataType::Int64, false)],
            vec![Arc::new(Int64Array::from(vec![1]))],
        );
        let wrong_type = write(
            "wrong-type.parquet",
            vec![
                Field::new(PSEUDONYM_HI, DataType::Int64, false),
                Field::new(PSEUDONYM_LO, DataType::Int32, false),
            ],
            vec![
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(Int32Array::from(vec![1])),
            ],
        );
        for p in [one_half, wrong_type] {
            assert!(
                matches!(
                    for_each_pseudonym(&p, 1, |_| ()),
                    Err(StoreError::Corrupt { .. })
                ),
                "{}",
                p.display()
            );
        }
    }

    #[test]
    fn plain_string_columns_are_read_too() {
        // Files rewritten by other tools may drop the dictionary encoding.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plain.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new(PSEUDONYM, DataType::FixedSizeBinary(16), false),
            Field::new(TITLE, DataType::Utf8, false),
            Field::new(WORK, DataType::Utf8, false),
        ]));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(
                FixedSizeBinaryArray::try_new(16, Buffer::from_vec(vec![7u8; 32]), None).unwrap(),
            ),
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(StringArray::from(vec!["wa", "wb"])),
        ];
        let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
        let mut w = ArrowWriter::try_new(std::fs::File::create(&p).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let part = read_loans(&p, 2, &|_| None).unwrap();
        assert_eq!(part.titles, [0, 1]);
        assert_eq!(part.dict[1], Local::New("b".into(), "wb".into()));
    }
}
