//! The packed form of a transaction's wire commands: how the binlog reader process hands them to the
//! bridge (ingest/reader_process.py), one bytes object per aggregate instance instead of a tuple, a
//! dict and a dozen objects per command.
//!
//! pack_wire(wire) is the JSON array of the wire tuples (mapping/translate.py command_to_wire) as
//! arrays, each item converted by value::from_py, so that exactly the values the compiled apply
//! accepts are packed (anything else, a NaN, a big int, a subclass, is Unsupported: the reader then
//! sends that transaction's tuples as they are). unpack_wire(bytes) gives the tuples back, equal item
//! for item (value::to_py), for everything that needs them as Python objects: a Python decider,
//! lookups, a rejection, the commands topic.


use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::json::Writer;
use crate::unsupported;
use crate::value::{to_py, write_py, Val, R};

const ITEMS: usize = 11;

pub fn pack(wire: &Bound<'_, PyAny>) -> R<Vec<u8>> {
    let list = wire.downcast::<PyList>().map_err(|_| unsupported!("wire commands that are not a list"))?;
    let mut tuples = Vec::with_capacity(list.len());
    for item in list.iter() {
        let t = item.downcast_exact::<PyTuple>().map_err(|_| unsupported!("a command that is not a tuple"))?.clone();
        if t.len() != ITEMS {
            return Err(unsupported!("a command tuple of {} items, not {ITEMS}", t.len()));
        }
        tuples.push(t);
    }
    write_commands(tuples.iter())
}

/// The packed bytes of these command tuples (each item as value::write_py writes it).
fn write_commands<'a, 'py: 'a>(tuples: impl Iterator<Item = &'a Bound<'py, PyTuple>>) -> R<Vec<u8>> {
    let mut w = Writer::new(512);
    w.buf.push(b'[');
    for (n, t) in tuples.enumerate() {
        if n > 0 {
            w.buf.push(b',');
        }
        w.buf.push(b'[');
        for (k, v) in t.iter().enumerate() {
            if k > 0 {
                w.buf.push(b',');
            }
            write_py(&mut w, &v, 0)?;
        }
        w.buf.push(b']');
    }
    w.buf.push(b']');
    if w.big && w.special {
        // the layout of floats in a document with a big int is the stdlib's: not worth a second form
        return Err(unsupported!("an int beyond 64 bits beside a float"));
    }
    Ok(w.buf)
}

pub fn unpack<'py>(py: Python<'py>, packed: &[u8]) -> R<Bound<'py, PyList>> {
    let items = match crate::json::loads(packed)? {
        Val::List(items) => items,
        _ => return Err(unsupported!("packed commands that are not a list")),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items.iter() {
        let t = match item {
            Val::List(t) if t.len() == ITEMS => t,
            _ => return Err(unsupported!("a packed command that is not a list of {ITEMS}")),
        };
        let objs = t.iter().map(|v| to_py(py, v)).collect::<PyResult<Vec<_>>>()?;
        out.push(PyTuple::new(py, objs)?);
    }
    Ok(PyList::new(py, out)?)
}

/// pack_txn(): one transaction's wire commands grouped per aggregate instance, in the order the runtime
/// applies them (groups in order of first appearance, each sorted by its commands' index: a stable
/// sort, as AggregateRuntime.apply_wire sorts), each group packed: ([(aggregate, aggregate_id, n,
/// packed)], {(table, operation): n}). None when a command belongs to `skip_aggregate` (the signal
/// table's rows: the pipeline reads those as Commands).
pub fn pack_txn<'py>(
    py: Python<'py>,
    wire: &Bound<'py, PyAny>,
    skip_aggregate: &str,
) -> R<Option<(Bound<'py, PyList>, Bound<'py, pyo3::types::PyDict>)>> {
    use pyo3::types::{PyDict, PyString};

    let list = wire.downcast::<PyList>().map_err(|_| unsupported!("wire commands that are not a list"))?;
    // a transaction touches few instances and tables: linear scans, no hashing, no copies of the strs
    let mut groups: Vec<(Bound<'py, PyString>, Bound<'py, PyString>, Vec<(i64, Bound<'py, PyTuple>)>)> = Vec::new();
    let mut counts: Vec<(Bound<'py, PyString>, Bound<'py, PyString>, usize)> = Vec::new();
    let same = |a: &Bound<'py, PyString>, b: &Bound<'py, PyString>| -> R<bool> {
        Ok(a.is(b) || crate::value::py_str(a)? == crate::value::py_str(b)?)
    };
    for item in list.iter() {
        let t = item.downcast_exact::<PyTuple>().map_err(|_| unsupported!("a command that is not a tuple"))?.clone();
        if t.len() != ITEMS {
            return Err(unsupported!("a command tuple of {} items, not {ITEMS}", t.len()));
        }
        let s = |i: usize| -> R<Bound<'py, PyString>> {
            Ok(t.get_item(i)?.downcast_exact::<PyString>().map_err(|_| unsupported!("command item {i} is not a str"))?.clone())
        };
        let (aggregate, aggregate_id, table, op) = (s(1)?, s(2)?, s(8)?, s(5)?);
        if crate::value::py_str(&aggregate)? == skip_aggregate {
            return Ok(None);
        }
        let at: i64 = t.get_borrowed_item(9)?.extract().map_err(|_| unsupported!("a command index that is not an int"))?;
        let mut counted = false;
        for c in counts.iter_mut() {
            if same(&c.0, &table)? && same(&c.1, &op)? {
                c.2 += 1;
                counted = true;
                break;
            }
        }
        if !counted {
            counts.push((table, op, 1));
        }
        let mut found = None;
        for (g, (a, i, _)) in groups.iter().enumerate() {
            if same(i, &aggregate_id)? && same(a, &aggregate)? {
                found = Some(g);
                break;
            }
        }
        match found {
            Some(g) => groups[g].2.push((at, t)),
            None => groups.push((aggregate, aggregate_id, vec![(at, t)])),
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for (aggregate, aggregate_id, mut cmds) in groups {
        cmds.sort_by_key(|(at, _)| *at);   // stable
        let raw = write_commands(cmds.iter().map(|(_, t)| t))?;
        out.push(PyTuple::new(
            py,
            [aggregate.into_any(), aggregate_id.into_any(), cmds.len().into_pyobject(py)?.into_any(),
             pyo3::types::PyBytes::new(py, &raw).into_any()],
        )?);
    }
    let count_dict = PyDict::new(py);
    for (table, op, n) in counts {
        count_dict.set_item(PyTuple::new(py, [table, op])?, n)?;
    }
    Ok(Some((PyList::new(py, out)?, count_dict)))
}
