//! Parquet exports: the three configured columns, read by name, a record
//! batch at a time. Ids and titles may be strings, binary (checked to be
//! UTF-8) or integers; loan dates may be strings (in `date_format`), dates
//! or timestamps.
//!
//! "Row N" in the report is the N-th record of the file, counting from 1.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::date::DateParser;
use crate::merge::Assembler;
use crate::parse::{Chunk, Layout};
use crate::{ExtractError, RejectReason, find_columns};

/// Records per Arrow batch: bounds memory whatever the file size.
const BATCH_ROWS: usize = 64 << 10;

/// Reads the configured columns of a Parquet file into an assembler.
pub(crate) fn read_parquet(
    path: &Path,
    source: &pipeline::Source,
    dates: DateParser,
    today: Date,
) -> Result<Assembler, ExtractError> {
    let fail = |reason: String| ExtractError::Parquet {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|source| ExtractError::Io {
        path: path.to_owned(),
        source,
    })?;
    // The footer and schema hold no field values, so their errors are shown.
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| fail(format!("not a readable parquet file: {e}")))?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let columns = find_columns(path, source, &names, true)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), columns);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| fail(format!("not a readable parquet file: {e}")))?;
    let wanted = [
        source.columns.borrower_id.trim(),
        source.columns.title_id.trim(),
        source.columns.loan_date.trim(),
    ];
    let layout = Layout {
        delimiter: b',',
        width: 3,
        columns: [0, 1, 2],
        dates,
        today,
    };
    let mut asm = Assembler::default();
    let mut rows = 0u64;
    for batch in reader {
        // A data page's error could quote what it failed on, so only the
        // position is given.
        let batch = batch.map_err(|_| fail(format!("unreadable data after record {rows}")))?;
        let column = |name: &str| -> Result<&ArrayRef, ExtractError> {
            batch
                .column_by_name(name)
                .ok_or_else(|| fail(format!("column {name} missing from a record batch")))
        };
        let [b, t, d] = wanted;
        let (b, t, d) = (column(b)?, column(t)?, column(d)?);
        let borrowers = Text::of(b).ok_or_else(|| unsupported(path, wanted[0], b))?;
        let titles = Text::of(t).ok_or_else(|| unsupported(path, wanted[1], t))?;
        let days = Days::of(d).ok_or_else(|| unsupported(path, wanted[2], d))?;
        let mut chunk = Chunk::new(rows + 1);
        let (mut bbuf, mut tbuf) = (zeroize::Zeroizing::new(String::new()), String::new());
        for i in 0..batch.num_rows() {
            let line = i as u64;
            let (Ok(borrower), Ok(title)) = (borrowers.get(i, &mut bbuf), titles.get(i, &mut tbuf))
            else {
                chunk.push_rejected(line, RejectReason::InvalidUtf8);
                continue;
            };
            let day = days.get(i, &layout.dates);
            chunk.push_value(&layout, line, borrower, title, day);
        }
        rows += batch.num_rows() as u64;
        asm.absorb(chunk).map_err(|_| ExtractError::TooManyLoans {
            path: path.to_owned(),
        })?;
    }
    if rows == 0 {
        return Err(ExtractError::EmptyFile {
            path: path.to_owned(),
        });
    }
    Ok(asm)
}

fn unsupported(path: &Path, name: &str, array: &ArrayRef) -> ExtractError {
    ExtractError::Parquet {
        path: path.to_owned(),
        reason: format!("column {name} has unsupported type {}", array.data_type()),
    }
}

/// A column of ids or titles.
enum Text<'a> {
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    Utf8View(&'a arrow_array::StringViewArray),
    Binary(&'a arrow_array::BinaryArray),
    LargeBinary(&'a arrow_array::LargeBinaryArray),
    I32(&'a arrow_array::Int32Array),
    I64(&'a arrow_array::Int64Array),
    U32(&'a arrow_array::UInt32Array),
    U64(&'a arrow_array::UInt64Array),
}

impl<'a> Text<'a> {
    fn of(a: &'a ArrayRef) -> Option<Text<'a>> {
        Some(match a.data_type() {
            DataType::Utf8 => Text::Utf8(a.as_string_opt::<i32>()?),
            DataType::LargeUtf8 => Text::LargeUtf8(a.as_string_opt::<i64>()?),
            DataType::Utf8View => Text::Utf8View(a.as_string_view_opt()?),
            DataType::Binary => Text::Binary(a.as_binary_opt::<i32>()?),
            DataType::LargeBinary => Text::LargeBinary(a.as_binary_opt::<i64>()?),
            DataType::Int32 => Text::I32(a.as_primitive_opt::<Int32Type>()?),
            DataType::Int64 => Text::I64(a.as_primitive_opt::<Int64Type>()?),
            DataType::UInt32 => Text::U32(a.as_primitive_opt::<UInt32Type>()?),
            DataType::UInt64 => Text::U64(a.as_primitive_opt::<UInt64Type>()?),
            _ => return None,
        })
    }

    /// Value `i` as text (`None` for a null; integers are written to
    /// `buf`), or `Err` for binary that is not UTF-8.
    fn get<'b>(&'b self, i: usize, buf: &'b mut String) -> Result<Option<&'b str>, ()> {
        use std::fmt::Write as _;
        let array: &dyn Array = match self {
            Text::Utf8(a) => *a,
            Text::LargeUtf8(a) => *a,
            Text::Utf8View(a) => *a,
            Text::Binary(a) => *a,
            Text::LargeBinary(a) => *a,
            Text::I32(a) => *a,
            Text::I64(a) => *a,
            Text::U32(a) => *a,
            Text::U64(a) => *a,
        };
        if array.is_null(i) {
            return Ok(None);
        }
        let mut number = |n: &dyn std::fmt::Display| {
            buf.clear();
            let _ = write!(buf, "{n}");
        };
        match self {
            Text::Utf8(a) => return Ok(Some(a.value(i))),
            Text::LargeUtf8(a) => return Ok(Some(a.value(i))),
            Text::Utf8View(a) => return Ok(Some(a.value(i))),
            Text::Binary(a) => return std::str::from_utf8(a.value(i)).map(Some).map_err(|_| ()),
            Text::LargeBinary(a) => {
                return std::str::from_utf8(a.value(i)).map(Some).map_err(|_| ());
            }
            Text::I32(a) => number(&a.value(i)),
            Text::I64(a) => number(&a.value(i)),
            Text::U32(a) => number(&a.value(i)),
            Text::U64(a) => number(&a.value(i)),
        }
        Ok(Some(buf.as_str()))
    }
}

/// A column of loan dates.
enum Days<'a> {
    Text(Text<'a>),
    Date32(&'a arrow_array::Date32Array),
    Date64(&'a arrow_array::Date64Array),
    /// Timestamps in `unit`; an instant if the column has a time zone, a
    /// local date-time if not.
    Timestamp(&'a dyn Array, TimeUnit, bool),
}

impl<'a> Days<'a> {
    fn of(a: &'a ArrayRef) -> Option<Days<'a>> {
        Some(match a.data_type() {
            DataType::Date32 => Days::Date32(a.as_primitive_opt::<Date32Type>()?),
            DataType::Date64 => Days::Date64(a.as_primitive_opt::<Date64Type>()?),
            DataType::Timestamp(unit, tz) => Days::Timestamp(a.as_ref(), *unit, tz.is_some()),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Days::Text(Text::of(a)?),
            _ => return None,
        })
    }

    fn get(&self, i: usize, dates: &DateParser) -> Result<Date, RejectReason> {
        let civil = |ts: Option<jiff::Timestamp>| {
            ts.map(|ts| TimeZone::UTC.to_datetime(ts).date())
                .ok_or(RejectReason::UnparseableDate)
        };
        let null = match self {
            Days::Text(_) => false,
            Days::Date32(a) => a.is_null(i),
            Days::Date64(a) => a.is_null(i),
            Days::Timestamp(a, ..) => a.is_null(i),
        };
        if null {
            return Err(RejectReason::MissingDate);
        }
        match self {
            Days::Text(t) => {
                let mut buf = String::new();
                match t.get(i, &mut buf) {
                    Ok(Some(s)) if !s.trim().is_empty() => {
                        dates.parse(s.trim()).ok_or(RejectReason::UnparseableDate)
                    }
                    Ok(_) => Err(RejectReason::MissingDate),
                    Err(()) => Err(RejectReason::UnparseableDate),
                }
            }
            Days::Date32(a) => civil(
                i64::from(a.value(i))
                    .checked_mul(86_400)
                    .and_then(|s| jiff::Timestamp::from_second(s).ok()),
            ),
            Days::Date64(a) => civil(jiff::Timestamp::from_millisecond(a.value(i)).ok()),
            Days::Timestamp(a, unit, instant) => {
                let v = match unit {
                    TimeUnit::Second => a
                        .as_primitive_opt::<TimestampSecondType>()
                        .map(|x| x.value(i)),
                    TimeUnit::Millisecond => a
                        .as_primitive_opt::<TimestampMillisecondType>()
                        .map(|x| x.value(i)),
                    TimeUnit::Microsecond => a
                        .as_primitive_opt::<TimestampMicrosecondType>()
                        .map(|x| x.value(i)),
                    TimeUnit::Nanosecond => a
                        .as_primitive_opt::<TimestampNanosecondType>()
                        .map(|x| x.value(i)),
                };
                let ts = v.and_then(|v| match unit {
                    TimeUnit::Second => jiff::Timestamp::from_second(v).ok(),
                    TimeUnit::Millisecond => jiff::Timestamp::from_millisecond(v).ok(),
                    TimeUnit::Microsecond => jiff::Timestamp::from_microsecond(v).ok(),
                    TimeUnit::Nanosecond => {
                        Some(jiff::Timestamp::from_nanosecond(i128::from(v)).ok()?)
                    }
                });
                if *instant {
                    ts.map(|ts| dates.day_of(ts))
                        .ok_or(RejectReason::UnparseableDate)
                } else {
                    civil(ts)
                }
            }
        }
    }
}
