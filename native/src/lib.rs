//! cdc_bridge._native: the declarative decider's apply in compiled code.
//!
//!     core = DeclarativeCore(spec)                  # once per aggregate mapping (native.py derives spec)
//!     state_json, drafts, rejections, held = core.apply(state_json | None, commands, aggregate_id)
//!     state_json, sequence, events, rejections, held = core.apply_wire(state_json, wire, aggregate_id,
//!         commit_ts, txn_id, position, sequence, schema_version, occurred_at, source_tail)
//!     value = core.envelope(event_type, aggregate, aggregate_id, sequence, schema_version,
//!                           occurred_at, source_json, data_json)
//!
//! The Python code is the reference (aggregate/declarative.py, jsoncodec.py, event.py): every
//! result is byte for byte what cdc_bridge.aggregate.native.ReferenceCore returns. What this code
//! cannot answer exactly raises `Unsupported`, and the caller takes the Python path for that call.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyInt, PyString};

mod decide;
mod json;
mod map;
mod packed;
mod value;

use value::{py_str, Unsupported, R};


mod exc {
    use super::*;
    create_exception!(
        _native,
        Unsupported,
        PyException,
        "The compiled core cannot give the reference's exact answer for this call: use the Python path."
    );
}

impl From<std::convert::Infallible> for Unsupported {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

fn raise(e: Unsupported) -> PyErr {
    exc::Unsupported::new_err(e.0)
}

/// The compiled apply of one declarative aggregate mapping.
#[pyclass(frozen, module = "cdc_bridge._native")]
struct DeclarativeCore {
    spec: decide::Spec,
}

#[pymethods]
impl DeclarativeCore {
    #[new]
    fn new(spec: &Bound<'_, PyDict>) -> PyResult<Self> {
        Ok(DeclarativeCore { spec: decide::Spec::from_dict(spec)? })
    }

    #[getter]
    fn aggregate(&self) -> &str {
        &self.spec.aggregate
    }

    /// apply(state_json, commands, aggregate_id) -> (new_state_json, drafts, rejections, held)
    ///
    /// state_json: jsoncodec.dumps(state) of ONE aggregate instance, or None for its initial state.
    /// commands: the instance's commands of ONE source transaction, in binlog order, each
    ///   (aggregate, entity, entity_id, operation, payload, before, table, soft, commit_ts, txn_id, position).
    /// aggregate_id: the instance's id (it appears in rejection details).
    /// Returns new_state_json: bytes; drafts: [(event_type, table, data_json, internal, tombstone)];
    /// rejections: [(command_index, reason, detail)]; held: [(entity, entity_id, since)].
    #[pyo3(signature = (state_json, commands, aggregate_id))]
    fn apply<'py>(
        &self,
        py: Python<'py>,
        state_json: Option<&[u8]>,
        commands: &Bound<'py, PyAny>,
        aggregate_id: &Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
        decide::apply(py, &self.spec, state_json, commands, aggregate_id).map_err(raise)
    }

    /// apply_wire(state_json, wire, aggregate_id, commit_ts, txn_id, position, sequence, schema_version,
    ///            occurred_at, source_tail) -> (state_json, sequence, events, rejections, held)
    ///
    /// apply() for commands in the wire form the reader process sends, (command_type, aggregate,
    /// aggregate_id, entity, entity_id, operation, payload, before, table, index, soft), all of ONE
    /// source transaction (commit_ts, txn_id, position: its values, given once), with the published
    /// events numbered from `sequence` + 1 and enveloped: events [(event_type, table, data_json,
    /// tombstone, value)], where value is the record value; source_tail: the source block's JSON after
    /// its "table" ({"table":"",<tail>} = jsoncodec.dumps of the block with an empty table). Returns the
    /// last sequence given out. `wire` may also be those commands packed (bytes: pack_wire, pack_txn),
    /// which are read as they are, with no Python object per command.
    #[pyo3(signature = (state_json, wire, aggregate_id, commit_ts, txn_id, position, sequence, schema_version,
                        occurred_at, source_tail))]
    #[allow(clippy::too_many_arguments)]
    fn apply_wire<'py>(
        &self,
        py: Python<'py>,
        state_json: Option<&[u8]>,
        wire: &Bound<'py, PyAny>,
        aggregate_id: &Bound<'py, PyString>,
        commit_ts: &Bound<'py, PyAny>,
        txn_id: &Bound<'py, PyAny>,
        position: &Bound<'py, PyAny>,
        sequence: &Bound<'py, PyAny>,
        schema_version: &Bound<'py, PyAny>,
        occurred_at: &Bound<'py, PyString>,
        source_tail: &[u8],
    ) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
        (|| {
            let (vals, ev) =
                txn_and_event_vals(commit_ts, txn_id, position, sequence, schema_version, occurred_at, source_tail)?;
            decide::apply_wire(py, &self.spec, state_json, wire, aggregate_id, &vals, &ev)
        })()
        .map_err(raise)
    }

    /// jsoncodec.dumps(DomainEvent(...).envelope(occurred_at)), from the pre-serialized source and data.
    #[allow(clippy::too_many_arguments)]
    fn envelope<'py>(
        &self,
        py: Python<'py>,
        event_type: &Bound<'py, PyString>,
        aggregate: &Bound<'py, PyString>,
        aggregate_id: &Bound<'py, PyString>,
        sequence: &Bound<'py, PyAny>,
        schema_version: &Bound<'py, PyAny>,
        occurred_at: &Bound<'py, PyString>,
        source_json: &[u8],
        data_json: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        envelope_bytes(event_type, aggregate, aggregate_id, sequence, schema_version, occurred_at, source_json, data_json)
            .map(|b| PyBytes::new(py, &b))
            .map_err(raise)
    }
}

fn exact_i64(o: &Bound<'_, PyAny>, what: &str) -> R<i64> {
    let i = o.downcast_exact::<PyInt>().map_err(|_| unsupported!("{what} is not an int"))?;
    i.extract::<i64>().map_err(|_| unsupported!("{what} beyond 64 bits"))
}

#[allow(clippy::too_many_arguments)]
fn envelope_bytes(
    event_type: &Bound<'_, PyString>,
    aggregate: &Bound<'_, PyString>,
    aggregate_id: &Bound<'_, PyString>,
    sequence: &Bound<'_, PyAny>,
    schema_version: &Bound<'_, PyAny>,
    occurred_at: &Bound<'_, PyString>,
    source_json: &[u8],
    data_json: &[u8],
) -> R<Vec<u8>> {
    envelope_parts(
        py_str(event_type)?,
        py_str(aggregate)?,
        py_str(aggregate_id)?,
        exact_i64(sequence, "sequence")?,
        exact_i64(schema_version, "schema_version")?,
        py_str(occurred_at)?,
        source_json,
        data_json,
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn envelope_parts(
    event_type: &str,
    aggregate: &str,
    aggregate_id: &str,
    sequence: i64,
    schema_version: i64,
    occurred_at: &str,
    source_json: &[u8],
    data_json: &[u8],
) -> R<Vec<u8>> {
    let mut seq_buf = itoa::Buffer::new();
    let seq = seq_buf.format(sequence);
    let event_id = format!("{aggregate}:{aggregate_id}:{seq}");

    // The envelope nests source and data one level deeper: orjson writes up to 254 levels.
    for part in [source_json, data_json] {
        if json::opener_count(part) >= json::ORJSON_MAX_DEPTH && json::max_depth(part) >= json::ORJSON_MAX_DEPTH {
            return Err(unsupported!("source or data nested {}+ levels", json::ORJSON_MAX_DEPTH));
        }
    }
    // An int beyond 64 bits (19+ digits) anywhere sends the whole envelope to the stdlib (other float
    // layout): then write it from the values instead of splicing the parts.
    if json::has_digit_run(source_json, 19) || json::has_digit_run(data_json, 19) {
        let mut m = value::new_map();
        m.insert(value::key("event_id"), value::Val::Str(value::key(&event_id)));
        m.insert(value::key("event_type"), value::Val::Str(value::key(event_type)));
        m.insert(value::key("aggregate"), value::Val::Str(value::key(aggregate)));
        m.insert(value::key("aggregate_id"), value::Val::Str(value::key(aggregate_id)));
        m.insert(value::key("sequence"), value::Val::Int(sequence));
        m.insert(value::key("schema_version"), value::Val::Int(schema_version));
        m.insert(value::key("occurred_at"), value::Val::Str(value::key(occurred_at)));
        m.insert(value::key("source"), json::loads(source_json)?);
        m.insert(value::key("data"), json::loads(data_json)?);
        return Ok(json::dumps_map(&m));
    }
    let mut b = Vec::with_capacity(160 + event_id.len() + source_json.len() + data_json.len());
    b.extend_from_slice(b"{\"event_id\":");
    json::write_str(&mut b, &event_id);
    b.extend_from_slice(b",\"event_type\":");
    json::write_str(&mut b, event_type);
    b.extend_from_slice(b",\"aggregate\":");
    json::write_str(&mut b, aggregate);
    b.extend_from_slice(b",\"aggregate_id\":");
    json::write_str(&mut b, aggregate_id);
    b.extend_from_slice(b",\"sequence\":");
    b.extend_from_slice(seq.as_bytes());
    b.extend_from_slice(b",\"schema_version\":");
    b.extend_from_slice(itoa::Buffer::new().format(schema_version).as_bytes());
    b.extend_from_slice(b",\"occurred_at\":");
    json::write_str(&mut b, occurred_at);
    b.extend_from_slice(b",\"source\":");
    b.extend_from_slice(source_json);
    b.extend_from_slice(b",\"data\":");
    b.extend_from_slice(data_json);
    b.push(b'}');
    Ok(b)
}

/// jsoncodec.dumps(obj) for the values the core handles (tests compare it with the Python codec).
#[pyfunction]
fn _dumps<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let v = value::from_py(obj, 0).map_err(raise)?;
    Ok(PyBytes::new(py, &json::dumps(&v)))
}

/// jsoncodec.dumps(jsoncodec.loads(raw)) through the core's reader and writer (tests).
#[pyfunction]
fn _reencode<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let v = json::loads(raw).map_err(raise)?;
    Ok(PyBytes::new(py, &json::dumps(&v)))
}

/// jsoncodec.loads(raw) through the core's reader, as Python values (tests).
#[pyfunction]
fn _loads(py: Python<'_>, raw: &[u8]) -> PyResult<PyObject> {
    let v = json::loads(raw).map_err(raise)?;
    value::to_py(py, &v)
}

/// json::has_digit_run (tests).
#[pyfunction]
fn _has_digit_run(raw: &[u8], n: usize) -> bool {
    n > 0 && json::has_digit_run(raw, n)
}

/// Kafka's `Utils.murmur2` (MurmurHash2, seed 0x9747b28c) as an unsigned 32-bit value;
/// aggregate/router.py's murmur2 is the reference (tests compare them).
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = SEED ^ (data.len() as u32);
    let chunks = data.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    if !rest.is_empty() {
        if rest.len() == 3 {
            h ^= (rest[2] as u32) << 16;
        }
        if rest.len() >= 2 {
            h ^= (rest[1] as u32) << 8;
        }
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// The values of one source transaction (what a held entry records) and of its events' envelopes, as
/// apply_wire takes them.
#[allow(clippy::too_many_arguments)]
fn txn_and_event_vals<'a>(
    commit_ts: &Bound<'_, PyAny>,
    txn_id: &Bound<'_, PyAny>,
    position: &Bound<'_, PyAny>,
    sequence: &Bound<'_, PyAny>,
    schema_version: &Bound<'_, PyAny>,
    occurred_at: &'a Bound<'_, PyString>,
    source_tail: &'a [u8],
) -> R<(decide::TxnVals, decide::EventVals<'a>)> {
    let vals = decide::TxnVals {
        commit_ts: value::from_py(commit_ts, 0)?,
        txn_id: value::from_py(txn_id, 0)?,
        position: if position.is_none() { value::Val::Null } else { value::from_py(position, 0)? },
    };
    let ev = decide::EventVals {
        sequence: exact_i64(sequence, "sequence")?,
        schema_version: exact_i64(schema_version, "schema_version")?,
        occurred_at: py_str(occurred_at)?,
        source_tail,
    };
    Ok((vals, ev))
}

/// pack_wire(wire) -> bytes: a transaction's wire commands (of one aggregate instance) in the packed
/// form apply_wire also reads; Unsupported for what the compiled apply would not take (see packed.rs).
#[pyfunction]
fn pack_wire<'py>(py: Python<'py>, wire: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let raw = packed::pack(wire).map_err(raise)?;
    Ok(PyBytes::new(py, &raw))
}

/// pack_txn(wire, skip_aggregate) -> (groups, counts) | None: a transaction's commands grouped per
/// aggregate instance and packed (see packed.rs); Unsupported as pack_wire.
#[pyfunction]
fn pack_txn<'py>(py: Python<'py>, wire: &Bound<'py, PyAny>, skip_aggregate: &str) -> PyResult<PyObject> {
    match packed::pack_txn(py, wire, skip_aggregate).map_err(raise)? {
        None => Ok(py.None()),
        Some((groups, counts)) => Ok(pyo3::types::PyTuple::new(py, [groups.into_any(), counts.into_any()])?.into_any().unbind()),
    }
}

/// unpack_wire(packed) -> [wire tuple]: pack_wire's commands as the tuples it was given.
#[pyfunction]
fn unpack_wire<'py>(py: Python<'py>, packed: &[u8]) -> PyResult<Bound<'py, pyo3::types::PyList>> {
    packed::unpack(py, packed).map_err(raise)
}

/// toPositive(murmur2(key as UTF-8)) % partitions: the partition Kafka's default partitioner picks
/// (aggregate/router.py partition_for; the caller checks partitions >= 1).
#[pyfunction]
fn partition_of(key: &str, partitions: u32) -> u32 {
    (murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // the spec format decide::Spec::from_dict reads and the API (3: apply_wire takes packed bytes);
    // aggregate/native.py refuses a stale build
    m.add("SPEC_VERSION", 3)?;
    m.add("Unsupported", m.py().get_type::<exc::Unsupported>())?;
    m.add_class::<DeclarativeCore>()?;
    m.add_function(wrap_pyfunction!(_dumps, m)?)?;
    m.add_function(wrap_pyfunction!(_reencode, m)?)?;
    m.add_function(wrap_pyfunction!(_loads, m)?)?;
    m.add_function(wrap_pyfunction!(_has_digit_run, m)?)?;
    m.add_function(wrap_pyfunction!(partition_of, m)?)?;
    m.add_function(wrap_pyfunction!(pack_wire, m)?)?;
    m.add_function(wrap_pyfunction!(unpack_wire, m)?)?;
    m.add_function(wrap_pyfunction!(pack_txn, m)?)?;
    Ok(())
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
