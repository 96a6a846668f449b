//! DeclarativeDecider.decide + evolve (cdc_bridge/aggregate/declarative.py), line for line.
//!
//! The Python module is the reference: each method here is named after the one it mirrors, takes
//! the same steps in the same order (dict insertion order decides the JSON bytes), and where the
//! Python code would raise (a KeyError on a corrupt state, float() of a huge int, ...) returns
//! Unsupported, so the caller takes the Python path and gets Python's own answer or error.

use std::cmp::Ordering;
use std::rc::Rc;

use std::collections::HashMap;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::json::dumps_map;
use crate::unsupported;
use crate::value::{
    dict_from_py, from_py, key, literal_from_py, map_with_capacity, new_map, num_cmp, py_eq, py_float, py_str,
    scalar_class, to_py, Key, Map, Val, R,
};

// Internal (never published) event types, as in declarative.py
const HELD_CHILD: &str = "_ChildHeld";
const HELD_CHILD_CHANGED: &str = "_HeldChildChanged";
const HELD_CHILD_RELEASED: &str = "_HeldChildReleased";
const SNAPSHOT_APPLIED: &str = "_SnapshotApplied";
const DELETED_IN_CREATING_TXN: &str = "_CreatedAndDeleted";
const DORMANT_CHILD_CHANGED: &str = "_DormantChildChanged";

// ------------------------------------------------------------------------------- the spec

/// A transition's from / to: "*", a value no row value can equal (a YAML date, NaN ...), or a value.
pub enum Lit {
    Any,
    Never,
    Value(Py<PyAny>),
}

pub struct TransitionSpec {
    field: String,
    from: Lit,
    to: Lit,
    event: Py<PyString>,
}

pub struct ChildSpec {
    name: String,
    table: Py<PyString>,
    added: Py<PyString>,
    changed: Py<PyString>,
    removed: Py<PyString>,
    enrich: Vec<String>,
}

/// What DeclarativeCore is built from (native.py derives it from a DeclarativeDecider).
pub struct Spec {
    /// unique per core (the per-thread Ctx cache's key)
    id: u64,
    pub aggregate: String,
    context_key: String,
    created: Py<PyString>,
    updated: Py<PyString>,
    deleted: Py<PyString>,
    snapshotted: Py<PyString>,
    emit_snapshot_events: bool,
    max_embedded: i64,
    tombstone_on_delete: bool,
    transitions: Vec<TransitionSpec>,
    children: Vec<ChildSpec>,
}

fn get_item<'py>(d: &Bound<'py, PyDict>, k: &str) -> PyResult<Bound<'py, PyAny>> {
    d.get_item(k)?
        .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(format!("spec has no {k:?}")))
}

fn get_str(d: &Bound<'_, PyDict>, k: &str) -> PyResult<String> {
    Ok(get_item(d, k)?.downcast_into::<PyString>()?.to_str()?.to_owned())
}

fn get_pystr(d: &Bound<'_, PyDict>, k: &str) -> PyResult<Py<PyString>> {
    Ok(get_item(d, k)?.downcast_into::<PyString>()?.unbind())
}

impl Spec {
    pub fn from_dict(d: &Bound<'_, PyDict>) -> PyResult<Spec> {
        let mut transitions = Vec::new();
        for t in get_item(d, "transitions")?.try_iter()? {
            let t = t?;
            let (field, from, to, event): (String, Bound<PyAny>, Bound<PyAny>, Bound<PyString>) = t.extract()?;
            transitions.push(TransitionSpec { field, from: lit(&from)?, to: lit(&to)?, event: event.unbind() });
        }
        let mut children = Vec::new();
        let cs = get_item(d, "children")?;
        let cs = cs.downcast::<PyDict>()?;
        for (name, c) in cs.iter() {
            let c = c.downcast_into::<PyDict>()?;
            children.push(ChildSpec {
                name: name.extract()?,
                table: get_pystr(&c, "table")?,
                added: get_pystr(&c, "added")?,
                changed: get_pystr(&c, "changed")?,
                removed: get_pystr(&c, "removed")?,
                enrich: get_item(&c, "enrich")?.extract()?,
            });
        }
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Spec {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            aggregate: get_str(d, "aggregate")?,
            context_key: get_str(d, "context_key")?,
            created: get_pystr(d, "created")?,
            updated: get_pystr(d, "updated")?,
            deleted: get_pystr(d, "deleted")?,
            snapshotted: get_pystr(d, "snapshotted")?,
            emit_snapshot_events: get_item(d, "emit_snapshot_events")?.extract()?,
            max_embedded: get_item(d, "max_embedded")?.extract()?,
            tombstone_on_delete: get_item(d, "tombstone_on_delete")?.extract()?,
            transitions,
            children,
        })
    }
}

/// ("any",) | ("never",) | ("value", v): v must convert (checked once here).
fn lit(o: &Bound<'_, PyAny>) -> PyResult<Lit> {
    let t = o.downcast::<PyTuple>()?;
    let tag: String = t.get_item(0)?.extract()?;
    match tag.as_str() {
        "any" => Ok(Lit::Any),
        "never" => Ok(Lit::Never),
        "value" => {
            let v = t.get_item(1)?;
            literal_from_py(&v).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.0))?;
            Ok(Lit::Value(v.unbind()))
        }
        _ => Err(pyo3::exceptions::PyValueError::new_err(format!("transition value tag {tag:?}"))),
    }
}

// ------------------------------------------------------------------------------- per call

enum LitV {
    Any,
    Never,
    V(Val),
}

/// The spec's names as this call's keys (Rc: the values of one call are not shared across threads).
struct Ctx {
    context_key: Key,
    child_names: Vec<Key>,
    enrich: Vec<Vec<Key>>,
    k_changes: Key,
    k_from: Key,
    k_to: Key,
    k_since: Key,
    k_fields: Key,
    k_table: Key,
    k_txn_id: Key,
    k_position: Key,
    k_exists: Key,
    k_deleted: Key,
    k_soft_deleted: Key,
    k_root: Key,
    k_children: Key,
    k_held: Key,
}

thread_local! {
    /// Each core's Ctx, per thread (its keys are Rc: they cannot live in the core, which threads share).
    static CTXS: std::cell::RefCell<HashMap<u64, Rc<Ctx>, foldhash::fast::RandomState>> =
        std::cell::RefCell::new(HashMap::with_hasher(Default::default()));
}

impl Ctx {
    fn for_spec(spec: &Spec) -> Rc<Ctx> {
        CTXS.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= 1024 && !c.contains_key(&spec.id) {
                c.clear(); // cores of mappings no longer used (tests build thousands): start over
            }
            c.entry(spec.id).or_insert_with(|| Rc::new(Ctx::new(spec))).clone()
        })
    }

    fn new(spec: &Spec) -> Ctx {
        let key = crate::value::intern;
        Ctx {
            context_key: key(&spec.context_key),
            child_names: spec.children.iter().map(|c| key(&c.name)).collect(),
            enrich: spec.children.iter().map(|c| c.enrich.iter().map(|f| key(f)).collect()).collect(),
            k_changes: key("changes"),
            k_from: key("from"),
            k_to: key("to"),
            k_since: key("since"),
            k_fields: key("fields"),
            k_table: key("table"),
            k_txn_id: key("txn_id"),
            k_position: key("position"),
            k_exists: key("exists"),
            k_deleted: key("deleted"),
            k_soft_deleted: key("soft_deleted"),
            k_root: key("root"),
            k_children: key("children"),
            k_held: key("held"),
        }
    }

    fn child_index(&self, name: &str) -> Option<usize> {
        self.child_names.iter().position(|n| &**n == name)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Insert,
    Update,
    Delete,
    Snapshot,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Snapshot => "snapshot",
        }
    }
}

enum Ent {
    Root,
    Child(usize),
    Unknown,
}

struct Cmd<'py> {
    aggregate: Option<Bound<'py, PyString>>,   // when wrong (the rejection names it)
    wrong_aggregate: bool,
    entity: Ent,
    entity_obj: Option<Bound<'py, PyString>>,  // when unknown (its repr() is in the rejection)
    entity_id: Key,
    op: Op,
    payload: Rc<Map>,
    table: Bound<'py, PyString>,
    soft: bool,
    commit_ts: Val,
    txn_id: Val,
    position: Val,
}

/// Where a command tuple keeps its items: the core form (aggregate, entity, entity_id, operation,
/// payload, before, table, soft, commit_ts, txn_id, position), or the wire form the reader process
/// sends (command_type, aggregate, aggregate_id, entity, entity_id, operation, payload, before, table,
/// index, soft), whose commit_ts, txn_id and position are the transaction's, given once.
struct Layout {
    aggregate: usize,
    entity: usize,
    entity_id: usize,
    operation: usize,
    payload: usize,
    table: usize,
    soft: usize,
}

const CORE: Layout = Layout { aggregate: 0, entity: 1, entity_id: 2, operation: 3, payload: 4, table: 6, soft: 7 };
const WIRE: Layout = Layout { aggregate: 1, entity: 3, entity_id: 4, operation: 5, payload: 6, table: 8, soft: 10 };

/// The transaction's values a wire command shares (what a held entry records).
pub struct TxnVals {
    pub commit_ts: Val,
    pub txn_id: Val,
    pub position: Val,
}

/// One command tuple (see Layout). Items are borrowed (no reference counting) but the table, returned
/// with the drafts, and what a rejection's detail needs. txn: None reads commit_ts, txn_id and
/// position from the tuple (the core form).
fn command<'py>(spec: &Spec, ctx: &Ctx, item: &Bound<'py, PyAny>, at: &Layout, txn: Option<&TxnVals>) -> R<Cmd<'py>> {
    let t = item.downcast::<PyTuple>().map_err(|_| unsupported!("a command that is not a tuple"))?;
    if t.len() != 11 {
        return Err(unsupported!("a command tuple of {} items, not 11", t.len()));
    }
    let item = |i: usize| t.get_borrowed_item(i);
    let not_str = |i: usize| unsupported!("command item {i} is not a str");
    let aggregate = item(at.aggregate)?;
    let aggregate = aggregate.downcast_exact::<PyString>().map_err(|_| not_str(at.aggregate))?;
    let entity_obj = item(at.entity)?;
    let entity_obj = entity_obj.downcast_exact::<PyString>().map_err(|_| not_str(at.entity))?;
    let entity_id = item(at.entity_id)?;
    let entity_id = entity_id.downcast_exact::<PyString>().map_err(|_| not_str(at.entity_id))?;
    let operation = item(at.operation)?;
    let operation = operation.downcast_exact::<PyString>().map_err(|_| not_str(at.operation))?;
    let table = item(at.table)?;
    let table = table.downcast_exact::<PyString>().map_err(|_| not_str(at.table))?;
    let wrong_aggregate = py_str(aggregate)? != spec.aggregate;
    let ent = py_str(entity_obj)?;
    let entity = if ent == "root" {
        Ent::Root
    } else {
        ctx.child_index(ent).map(Ent::Child).unwrap_or(Ent::Unknown)
    };
    let op = match py_str(operation)? {
        "insert" => Op::Insert,
        "update" => Op::Update,
        "delete" => Op::Delete,
        "snapshot" => Op::Snapshot,
        other => return Err(unsupported!("operation {other:?}")),
    };
    let payload = item(at.payload)?;
    let payload = payload.downcast_exact::<PyDict>().map_err(|_| unsupported!("a payload that is not a dict"))?;
    let (commit_ts, txn_id, position) = match txn {
        Some(v) => (v.commit_ts.clone(), v.txn_id.clone(), v.position.clone()),
        None => {
            let position = item(10)?;
            (
                from_py(&*item(8)?, 0)?,
                from_py(&*item(9)?, 0)?,
                if position.is_none() { Val::Null } else { from_py(&position, 0)? },
            )
        }
    };
    Ok(Cmd {
        aggregate: if wrong_aggregate { Some(aggregate.clone()) } else { None },
        entity_obj: if matches!(entity, Ent::Unknown) { Some(entity_obj.clone()) } else { None },
        wrong_aggregate,
        entity,
        entity_id: key(py_str(entity_id)?),
        op,
        payload: Rc::new(dict_from_py(payload, 1)?),
        soft: item(at.soft)?.is_truthy()?,
        commit_ts,
        txn_id,
        position,
        table: table.clone(),
    })
}

/// One wire command of the packed form (crate::packed): the wire tuple as a JSON array, its values as
/// value::from_py made them in the reader process. The same checks and the same Cmd as command().
fn command_from_val<'py>(py: Python<'py>, spec: &Spec, ctx: &Ctx, item: &Val, txn: &TxnVals) -> R<Cmd<'py>> {
    let t = match item {
        Val::List(t) => t,
        _ => return Err(unsupported!("a packed command that is not a list")),
    };
    if t.len() != 11 {
        return Err(unsupported!("a command tuple of {} items, not 11", t.len()));
    }
    let s = |i: usize| match &t[i] {
        Val::Str(s) => Ok(s),
        _ => Err(unsupported!("command item {i} is not a str")),
    };
    let (aggregate, ent, entity_id, operation, table) = (s(WIRE.aggregate)?, s(WIRE.entity)?, s(WIRE.entity_id)?,
                                                         s(WIRE.operation)?, s(WIRE.table)?);
    let wrong_aggregate = **aggregate != *spec.aggregate;
    let entity = if &**ent == "root" {
        Ent::Root
    } else {
        ctx.child_index(ent).map(Ent::Child).unwrap_or(Ent::Unknown)
    };
    let op = match &**operation {
        "insert" => Op::Insert,
        "update" => Op::Update,
        "delete" => Op::Delete,
        "snapshot" => Op::Snapshot,
        other => return Err(unsupported!("operation {other:?}")),
    };
    let payload = match &t[WIRE.payload] {
        Val::Dict(d) => d.clone(),
        _ => return Err(unsupported!("a payload that is not a dict")),
    };
    Ok(Cmd {
        aggregate: if wrong_aggregate { Some(PyString::new(py, aggregate)) } else { None },
        entity_obj: if matches!(entity, Ent::Unknown) { Some(PyString::new(py, ent)) } else { None },
        wrong_aggregate,
        entity,
        entity_id: entity_id.clone(),
        op,
        payload,
        soft: t[WIRE.soft].truthy(),
        commit_ts: txn.commit_ts.clone(),
        txn_id: txn.txn_id.clone(),
        position: txn.position.clone(),
        table: PyString::intern(py, table),
    })
}

// ------------------------------------------------------------------------------- drafts

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Created,
    Snapshotted,
    Deleted,
    Updated,
    ChildAdded,
    ChildChanged,
    ChildRemoved,
    Held,
    HeldChanged,
    HeldReleased,
}

impl Kind {
    fn is_child(self) -> bool {
        matches!(self, Kind::ChildAdded | Kind::ChildChanged | Kind::ChildRemoved)
    }
}

enum Name {
    Spec(Py<PyString>),
    Internal(&'static str),
}

type Colls = crate::map::OMap<Rc<Map>>;

fn new_colls() -> Colls {
    Colls::new()
}

/// EventDraft plus the meta the declarative decider keeps in it.
struct Draft<'py> {
    name: Name,
    table: Bound<'py, PyString>,
    data: Map,
    internal: bool,
    kind: Kind,
    entity: usize,
    entity_id: Option<Key>,
    fields: Option<Rc<Map>>,
    root: Option<Rc<Map>>,
    children: Option<Colls>,
    dormant: Option<Colls>,
    tombstone: bool,
    context_set: bool,
    entry: Option<Rc<Map>>,
}

impl<'py> Draft<'py> {
    fn new(name: Name, table: &Bound<'py, PyString>, data: Map, internal: bool, kind: Kind) -> Self {
        Draft {
            name,
            table: table.clone(),
            data,
            internal,
            kind,
            entity: 0,
            entity_id: None,
            fields: None,
            root: None,
            children: None,
            dormant: None,
            tombstone: false,
            context_set: false,
            entry: None,
        }
    }

    fn child(mut self, entity: usize, entity_id: &Key) -> Self {
        self.entity = entity;
        self.entity_id = Some(entity_id.clone());
        self
    }
}

// ------------------------------------------------------------------------------- helpers

/// `dict(v)` of a value that must be a dict here (a raw one is parsed).
fn as_dict(v: &Val) -> R<Rc<Map>> {
    match v {
        Val::Dict(d) => Ok(d.clone()),
        Val::Raw(r) => match r.parse() {
            Val::Dict(d) => Ok(d),
            _ => unreachable!("raw JSON is an object"),
        },
        other => Err(unsupported!("a {} where the reference expects a dict", other.type_name())),
    }
}

/// `dict(v)` as a value: a dict, raw or parsed, as it is (an equal copy).
fn dict_val(v: &Val) -> R<Val> {
    match v {
        Val::Dict(_) | Val::Raw(_) => Ok(v.clone()),
        other => Err(unsupported!("a {} where the reference expects a dict", other.type_name())),
    }
}

/// `{**a, **b}`
fn merge(a: &Map, b: &Map) -> Map {
    let mut m = a.clone();
    for (k, v) in b.iter() {
        m.insert(k.clone(), v.clone());
    }
    m
}

/// declarative.diff: {field: {"from": old, "to": new}} for each field whose value differs.
fn diff(py: Python<'_>, ctx: &Ctx, old: &Map, new: &Map) -> R<Map> {
    let mut out = new_map();
    for (k, v) in new.iter() {
        match old.get(k) {
            Some(o) => {
                if !py_eq(py, o, v)? {
                    out.insert(k.clone(), change(ctx, o.clone(), v.clone()));
                }
            }
            None => {
                if !v.is_null() {
                    out.insert(k.clone(), change(ctx, Val::Null, v.clone()));
                }
            }
        }
    }
    Ok(out)
}

fn change(ctx: &Ctx, from: Val, to: Val) -> Val {
    let mut m = map_with_capacity(2);
    m.insert(ctx.k_from.clone(), from);
    m.insert(ctx.k_to.clone(), to);
    Val::Dict(Rc::new(m))
}

/// declarative.same_value(a, b): a row value against a rule's value.
fn same_value(py: Python<'_>, a: &Val, b: &LitV) -> R<bool> {
    let b = match b {
        LitV::Never => return Ok(false),
        LitV::Any => unreachable!("'*' is tested before"),
        LitV::V(b) => b,
    };
    if py_eq(py, a, b)? {
        return Ok(true);
    }
    if matches!(a, Val::Null | Val::Bool(_)) || matches!(b, Val::Null | Val::Bool(_)) {
        return Ok(false);
    }
    match (scalar_class(a), scalar_class(b)) {
        (Some(x), Some(y)) if x != y => {
            // float(a) == float(b); a ValueError (a str that is not a number) -> str(a) == str(b),
            // which is then always False: str() of an int or a float is a number float() reads
            let Some(fa) = py_float(py, a)? else { return Ok(false) };
            let Some(fb) = py_float(py, b)? else { return Ok(false) };
            Ok(fa == fb)
        }
        _ => Ok(false),
    }
}

/// `dict(x or {})` stored back under `k` (in place when it is there, else appended), as evolve does.
fn dict_slot<'m>(m: &'m mut Map, k: &Key) -> R<&'m mut Map> {
    let slot = m.get_or_insert_with(k, || Val::Null);
    if let Val::Raw(r) = slot {
        *slot = r.parse();
    }
    if !matches!(slot, Val::Dict(_)) {
        if slot.truthy() {
            return Err(unsupported!("a {} where the reference expects a dict", slot.type_name()));
        }
        *slot = Val::Dict(Rc::new(new_map()));
    }
    match slot {
        Val::Dict(d) => Ok(Rc::make_mut(d)),
        _ => unreachable!(),
    }
}

// ------------------------------------------------------------------------------- the transaction

struct Txn<'a, 'py> {
    py: Python<'py>,
    spec: &'a Spec,
    ctx: &'a Ctx,
    aggregate_id: &'a str,
    lits: Option<Vec<(LitV, LitV)>>,
    exists: bool,
    deleted: bool,
    soft: bool,
    root: Option<Rc<Map>>,
    children: Colls,
    held: Colls,
    out: Vec<Option<Draft<'py>>>,
    rejections: Vec<(usize, &'static str, String)>,
    created_at: Option<usize>,
    segment_start: usize,
    added_at: HashMap<(usize, Key), usize, foldhash::fast::RandomState>,
    removed: Vec<Option<Map>>,
}

/// `{n: dict(c) for n, c in (state.get(k) or {}).items()}`
fn colls_of(state: &Map, k: &Key) -> R<Colls> {
    let mut out = new_colls();
    match state.get(k) {
        None => {}
        Some(d @ (Val::Dict(_) | Val::Raw(_))) => {
            for (n, c) in as_dict(d)?.iter() {
                out.insert(n.clone(), as_dict(c)?);
            }
        }
        Some(v) if !v.truthy() => {}
        Some(v) => return Err(unsupported!("state[{k:?}] is a {}", v.type_name())),
    }
    Ok(out)
}

impl<'a, 'py> Txn<'a, 'py> {
    fn new(py: Python<'py>, spec: &'a Spec, ctx: &'a Ctx, aggregate_id: &'a str, state: &Map) -> R<Self> {
        let flag = |k: &Key| state.get(k).map(|v| v.truthy()).unwrap_or(false);
        let root = match state.get(&ctx.k_root) {
            None | Some(Val::Null) => None,
            Some(v) => Some(as_dict(v)?),
        };
        Ok(Txn {
            py,
            spec,
            ctx,
            aggregate_id,
            lits: None,
            exists: flag(&ctx.k_exists),
            deleted: flag(&ctx.k_deleted),
            soft: flag(&ctx.k_soft_deleted),
            root,
            children: colls_of(state, &ctx.k_children)?,
            held: colls_of(state, &ctx.k_held)?,
            out: Vec::new(),
            rejections: Vec::new(),
            created_at: None,
            segment_start: 0,
            added_at: HashMap::with_hasher(Default::default()),
            removed: Vec::new(),
        })
    }

    fn emit(&mut self, d: Draft<'py>) -> usize {
        self.out.push(Some(d));
        self.out.len() - 1
    }

    fn reject(&mut self, index: usize, reason: &'static str, detail: String) {
        self.rejections.push((index, reason, detail));
    }

    /// _what: the child a rejection is about, e.g. "Order 7 lines 12"
    fn what(&self, cmd: &Cmd, ci: usize) -> String {
        format!("{} {} {} {}", self.spec.aggregate, self.aggregate_id, self.ctx.child_names[ci], cmd.entity_id)
    }

    fn decide(&mut self, cmds: &[Cmd<'py>]) -> R<()> {
        for (i, cmd) in cmds.iter().enumerate() {
            if cmd.wrong_aggregate {
                let agg = cmd.aggregate.as_ref().expect("kept when wrong");
                let d = format!("command for {} sent to {}", py_str(agg)?, self.spec.aggregate);
                self.reject(i, "wrong_aggregate", d);
                continue;
            }
            match cmd.entity {
                Ent::Root => self.root_command(i, cmd)?,
                Ent::Child(ci) => self.child_command(ci, i, cmd)?,
                Ent::Unknown => {
                    let r = cmd.entity_obj.as_ref().expect("kept when unknown").repr()?;
                    let d = format!("{} has no child collection {}", self.spec.aggregate, py_str(&r)?);
                    self.reject(i, "unknown_entity", d);
                }
            }
        }
        self.finish()
    }

    // -------------------------------------------------------------------- root

    fn root_command(&mut self, i: usize, cmd: &Cmd<'py>) -> R<()> {
        let (agg, id) = (&self.spec.aggregate, self.aggregate_id);
        match cmd.op {
            Op::Insert | Op::Snapshot if !self.exists => self.create(cmd)?,
            Op::Insert => self.reject(i, "duplicate_create", format!("{agg} {id} already exists")),
            Op::Update | Op::Snapshot => {
                if !self.exists {
                    let why = if self.deleted { "was deleted" } else { "was never seen" };
                    let d = format!("update of {agg} {id}, which {why}");
                    self.reject(i, "update_of_unknown_aggregate", d);
                    return Ok(());
                }
                self.update(cmd)?
            }
            Op::Delete => {
                if !self.exists {
                    let why = if self.deleted { "is already deleted" } else { "was never seen" };
                    let d = format!("delete of {agg} {id}, which {why}");
                    self.reject(i, "delete_of_unknown_aggregate", d);
                    return Ok(());
                }
                self.delete(cmd)?
            }
        }
        Ok(())
    }

    fn create(&mut self, cmd: &Cmd<'py>) -> R<()> {
        let ctx = self.ctx;
        // Children held before the root arrived join it now, oldest first.
        let held = std::mem::replace(&mut self.held, new_colls());
        for (name, entries) in held.iter() {
            let mut items: Vec<(&Key, Rc<Map>, Val)> = Vec::with_capacity(entries.len());
            for (cid, entry) in entries.iter() {
                let e = as_dict(entry)?;
                let since = e.get(&ctx.k_since).ok_or_else(|| unsupported!("a held entry without since"))?.clone();
                items.push((cid, e, since));
            }
            if items.len() > 1 {
                let mut bad = false;
                items.sort_by(|a, b| {
                    num_cmp(&a.2, &b.2).unwrap_or_else(|| {
                        bad = true;
                        Ordering::Equal
                    })
                });
                if bad {
                    return Err(unsupported!("held entries whose since values are not numbers"));
                }
            }
            let coll = Rc::make_mut(self.children.get_or_insert_with(name, || Rc::new(new_map())));
            for (cid, e, _) in items {
                let fields = e.get(&ctx.k_fields).ok_or_else(|| unsupported!("a held entry without fields"))?;
                coll.insert(cid.clone(), dict_val(fields)?);
            }
        }
        self.exists = true;
        self.deleted = false;
        self.soft = false;
        self.root = Some(cmd.payload.clone());
        let s = self.spec;
        let (kind, name, internal) = if cmd.op == Op::Snapshot {
            if s.emit_snapshot_events {
                (Kind::Snapshotted, Name::Spec(s.snapshotted.clone_ref(self.py)), false)
            } else {
                (Kind::Snapshotted, Name::Internal(SNAPSHOT_APPLIED), true)
            }
        } else {
            (Kind::Created, Name::Spec(s.created.clone_ref(self.py)), false)
        };
        // data and meta are filled in finish(): the event carries the state at the end of the txn.
        let at = self.emit(Draft::new(name, &cmd.table, new_map(), internal, kind));
        self.created_at = Some(at);
        self.segment_start = at;
        self.added_at.clear();
        self.removed.clear();
        Ok(())
    }

    fn update(&mut self, cmd: &Cmd<'py>) -> R<()> {
        let root = self.root.clone().ok_or_else(|| unsupported!("an existing root without fields"))?;
        let new = Rc::new(merge(&root, &cmd.payload));
        if self.created_at.is_some() {
            self.root = Some(new);
            return Ok(());
        }
        let changes = diff(self.py, self.ctx, &root, &new)?;
        self.root = Some(new.clone());
        if changes.is_empty() {
            return Ok(());
        }
        let names = self.transition_events(&changes)?;
        let changes = Val::Dict(Rc::new(changes));
        for name in names {
            let mut data = (*new).clone();
            data.insert(self.ctx.k_changes.clone(), changes.clone());
            let mut d = Draft::new(Name::Spec(name), &cmd.table, data, false, Kind::Updated);
            d.root = Some(new.clone());
            self.emit(d);
        }
        Ok(())
    }

    /// DeclarativeDecider.transition_events
    fn transition_events(&mut self, changes: &Map) -> R<Vec<Py<PyString>>> {
        let py = self.py;
        if self.lits.is_none() {
            let mut lits = Vec::with_capacity(self.spec.transitions.len());
            for t in &self.spec.transitions {
                let conv = |l: &Lit| -> R<LitV> {
                    Ok(match l {
                        Lit::Any => LitV::Any,
                        Lit::Never => LitV::Never,
                        Lit::Value(v) => LitV::V(literal_from_py(v.bind(py))?),
                    })
                };
                lits.push((conv(&t.from)?, conv(&t.to)?));
            }
            self.lits = Some(lits);
        }
        let lits = self.lits.as_ref().unwrap();
        let mut fired = Vec::new();
        let mut fields: Vec<&str> = Vec::new();
        for (t, (from, to)) in self.spec.transitions.iter().zip(lits.iter()) {
            if fields.contains(&t.field.as_str()) {
                continue;
            }
            // _Transition.matches
            let Some(ch) = changes.get(t.field.as_str()) else { continue };
            let ch = as_dict(ch)?;
            let from_ok = match from {
                LitV::Any => true,
                l => same_value(py, &ch[&self.ctx.k_from], l)?,
            };
            let matched = from_ok
                && match to {
                    LitV::Any => true,
                    l => same_value(py, &ch[&self.ctx.k_to], l)?,
                };
            if matched {
                fields.push(t.field.as_str());
                fired.push(t.event.clone_ref(py));
            }
        }
        if fired.is_empty() {
            fired.push(self.spec.updated.clone_ref(py));
        }
        Ok(fired)
    }

    fn delete(&mut self, cmd: &Cmd<'py>) -> R<()> {
        let (py, ctx, spec) = (self.py, self.ctx, self.spec);
        let root = self.root.clone().ok_or_else(|| unsupported!("an existing root without fields"))?;
        // a soft delete (the row left the `where`): the children stay, dormant
        let dormant = if cmd.soft { Some(self.children.clone()) } else { None };
        if let Some(created_at) = self.created_at {
            // Created and deleted in one transaction: nothing to announce.
            for d in &mut self.out[created_at..] {
                *d = None;
            }
            let mut d = Draft::new(Name::Internal(DELETED_IN_CREATING_TXN), &cmd.table, new_map(), true, Kind::Deleted);
            d.dormant = dormant;
            self.emit(d);
        } else {
            // The deleted event is the transaction's outcome for this root's lifetime.
            for d in &mut self.out[self.segment_start..] {
                *d = None;
            }
            let last_root = merge(&root, &cmd.payload);
            let mut last_children: Vec<(usize, Map)> = Vec::with_capacity(ctx.child_names.len());
            for (ci, name) in ctx.child_names.iter().enumerate() {
                let mut coll = self.children.get(name).map(|c| (**c).clone()).unwrap_or_else(new_map);
                if let Some(Some(rem)) = self.removed.get(ci) {
                    for (cid, fields) in rem.iter() {
                        coll.get_or_insert_with(cid, || fields.clone());
                    }
                }
                last_children.push((ci, coll));
            }
            // a large aggregate: the children beyond max_embedded_children leave first, one removed event each
            let (embedded, overflow) = self.split(last_children.iter().map(|(ci, c)| (*ci, c)));
            for (ci, cid, fields) in overflow {
                let fields = as_dict(&fields)?;
                let mut data = (*fields).clone();
                data.insert(ctx.context_key.clone(), Val::Dict(Rc::new(self.context(Some(&last_root), ci))));
                let c = &spec.children[ci];
                let mut d = Draft::new(Name::Spec(c.removed.clone_ref(py)), c.table.bind(py), data, false, Kind::ChildRemoved)
                    .child(ci, &cid);
                d.fields = Some(fields);
                d.context_set = true;
                self.emit(d);
            }
            let data = self.full_data(&last_root, &embedded)?;
            let mut d = Draft::new(Name::Spec(spec.deleted.clone_ref(py)), &cmd.table, data, false, Kind::Deleted);
            d.dormant = dormant;
            d.tombstone = spec.tombstone_on_delete;
            self.emit(d);
        }
        self.exists = false;
        self.deleted = true;
        self.soft = cmd.soft;
        self.root = None;
        if !cmd.soft {
            self.children = new_colls();
        }
        self.held = new_colls();
        self.created_at = None;
        self.segment_start = self.out.len();
        self.added_at.clear();
        self.removed.clear();
        Ok(())
    }

    // -------------------------------------------------------------------- children

    fn child_command(&mut self, ci: usize, i: usize, cmd: &Cmd<'py>) -> R<()> {
        if self.exists {
            self.child_of_existing(ci, i, cmd)
        } else if self.soft {
            self.child_of_dormant(ci, cmd)
        } else {
            self.child_of_missing(ci, i, cmd)
        }
    }

    /// A child of a soft-deleted root: kept up to date silently, for the root's return.
    fn child_of_dormant(&mut self, ci: usize, cmd: &Cmd<'py>) -> R<()> {
        let name = self.ctx.child_names[ci].clone();
        let cid = &cmd.entity_id;
        let coll = self.children.get_or_insert_with(&name, || Rc::new(new_map()));
        if cmd.op == Op::Delete {
            if coll.contains_key(cid) {
                let popped = Rc::make_mut(coll).shift_remove(cid).unwrap();
                if !popped.is_null() {
                    let d = Draft::new(Name::Internal(DORMANT_CHILD_CHANGED), &cmd.table, new_map(), true, Kind::ChildRemoved)
                        .child(ci, cid);
                    self.emit(d);
                }
            }
            return Ok(());
        }
        let fields = match coll.get(cid) {
            Some(v) if v.truthy() => Rc::new(merge(&*as_dict(v)?, &cmd.payload)),
            _ => Rc::new((*cmd.payload).clone()),
        };
        Rc::make_mut(coll).insert(cid.clone(), Val::Dict(fields.clone()));
        let mut d = Draft::new(Name::Internal(DORMANT_CHILD_CHANGED), &cmd.table, new_map(), true, Kind::ChildChanged)
            .child(ci, cid);
        d.fields = Some(fields);
        self.emit(d);
        Ok(())
    }

    fn child_of_existing(&mut self, ci: usize, i: usize, cmd: &Cmd<'py>) -> R<()> {
        let (py, ctx, spec) = (self.py, self.ctx, self.spec);
        let name = ctx.child_names[ci].clone();
        let cid = &cmd.entity_id;
        let op = cmd.op;
        let coll = self.children.get_or_insert_with(&name, || Rc::new(new_map()));
        let cur = coll.get(cid).filter(|v| !v.is_null()).cloned();
        match (op, cur) {
            (Op::Insert, Some(_)) => {
                let d = format!("{} already exists", self.what(cmd, ci));
                self.reject(i, "duplicate_create", d);
            }
            (Op::Insert | Op::Snapshot, None) => {
                Rc::make_mut(coll).insert(cid.clone(), Val::Dict(cmd.payload.clone()));
                if self.created_at.is_none() {
                    let c = &spec.children[ci];
                    let d = Draft::new(Name::Spec(c.added.clone_ref(py)), &cmd.table, new_map(), false, Kind::ChildAdded)
                        .child(ci, cid);
                    let at = self.emit(d);
                    self.added_at.insert((ci, cid.clone()), at);
                }
            }
            (_, None) => {
                let reason = if op == Op::Update { "update_of_unknown_child" } else { "delete_of_unknown_child" };
                let d = format!("{} of {}, which was never seen", op.name(), self.what(cmd, ci));
                self.reject(i, reason, d);
            }
            (Op::Update | Op::Snapshot, Some(cur)) => {
                let cur = as_dict(&cur)?;
                let new = Rc::new(merge(&cur, &cmd.payload));
                let changes = diff(py, ctx, &cur, &new)?;
                Rc::make_mut(coll).insert(cid.clone(), Val::Dict(new.clone()));
                if changes.is_empty() || self.created_at.is_some() || self.added_at.contains_key(&(ci, cid.clone())) {
                    return Ok(());
                }
                let mut data = (*new).clone();
                data.insert(ctx.k_changes.clone(), Val::Dict(Rc::new(changes)));
                let c = &spec.children[ci];
                let mut d = Draft::new(Name::Spec(c.changed.clone_ref(py)), &cmd.table, data, false, Kind::ChildChanged)
                    .child(ci, cid);
                d.fields = Some(new);
                self.emit(d);
            }
            (Op::Delete, Some(cur)) => {
                let last = merge(&*as_dict(&cur)?, &cmd.payload);
                Rc::make_mut(coll).shift_remove(cid);
                if self.created_at.is_some() {
                    return Ok(());
                }
                if let Some(at) = self.added_at.remove(&(ci, cid.clone())) {
                    self.out[at] = None;
                    return Ok(());
                }
                let data = last.clone();
                if self.removed.len() <= ci {
                    self.removed.resize_with(ci + 1, || None);
                }
                self.removed[ci].get_or_insert_with(new_map).insert(cid.clone(), Val::Dict(Rc::new(last)));
                let c = &spec.children[ci];
                let d = Draft::new(Name::Spec(c.removed.clone_ref(py)), &cmd.table, data, false, Kind::ChildRemoved)
                    .child(ci, cid);
                self.emit(d);
            }
        }
        Ok(())
    }

    fn child_of_missing(&mut self, ci: usize, i: usize, cmd: &Cmd<'py>) -> R<()> {
        let ctx = self.ctx;
        let name = ctx.child_names[ci].clone();
        let cid = &cmd.entity_id;
        let op = cmd.op;
        let coll = self.held.get_or_insert_with(&name, || Rc::new(new_map()));
        let entry = coll.get(cid).filter(|v| !v.is_null()).cloned();
        match (op, entry) {
            (Op::Insert, Some(_)) => {
                let d = format!("{} is already held", self.what(cmd, ci));
                self.reject(i, "duplicate_create", d);
            }
            (Op::Insert | Op::Snapshot, None) => {
                let mut e = map_with_capacity(5);
                e.insert(ctx.k_since.clone(), cmd.commit_ts.clone());
                e.insert(ctx.k_fields.clone(), Val::Dict(cmd.payload.clone()));
                e.insert(ctx.k_table.clone(), Val::Str(key(py_str(&cmd.table)?)));
                e.insert(ctx.k_txn_id.clone(), cmd.txn_id.clone());
                e.insert(ctx.k_position.clone(), cmd.position.clone());
                let e = Rc::new(e);
                Rc::make_mut(coll).insert(cid.clone(), Val::Dict(e.clone()));
                let mut d = Draft::new(Name::Internal(HELD_CHILD), &cmd.table, new_map(), true, Kind::Held).child(ci, cid);
                d.entry = Some(e);
                self.emit(d);
            }
            (Op::Update | Op::Snapshot, entry) => {
                let Some(entry) = entry else {
                    let why = if self.deleted { "was deleted" } else { "does not exist" };
                    let d = format!(
                        "update of {}, never seen, and the {} {why}",
                        self.what(cmd, ci),
                        self.spec.aggregate
                    );
                    self.reject(i, "update_of_unknown_child", d);
                    return Ok(()); // as the reference: an emptied collection stays in held
                };
                let entry = as_dict(&entry)?;
                let old = entry.get(&ctx.k_fields).ok_or_else(|| unsupported!("a held entry without fields"))?;
                let fields = Rc::new(merge(&*as_dict(old)?, &cmd.payload));
                let mut e = (*entry).clone();
                e.insert(ctx.k_fields.clone(), Val::Dict(fields.clone()));
                Rc::make_mut(coll).insert(cid.clone(), Val::Dict(Rc::new(e)));
                let mut d = Draft::new(Name::Internal(HELD_CHILD_CHANGED), &cmd.table, new_map(), true, Kind::HeldChanged)
                    .child(ci, cid);
                d.fields = Some(fields);
                self.emit(d);
            }
            (Op::Delete, Some(_)) => {
                Rc::make_mut(coll).shift_remove(cid);
                let d = Draft::new(Name::Internal(HELD_CHILD_RELEASED), &cmd.table, new_map(), true, Kind::HeldReleased)
                    .child(ci, cid);
                self.emit(d);
            }
            (Op::Delete, None) => {
                if !self.deleted {
                    let d = format!(
                        "delete of {}, never seen, and the {} does not exist",
                        self.what(cmd, ci),
                        self.spec.aggregate
                    );
                    self.reject(i, "delete_of_unknown_child", d);
                }
                // else: the root was deleted; its deleted event carried this child already.
            }
        }
        if self.held.get(&name).map(|c| c.is_empty()).unwrap_or(false) {
            self.held.shift_remove(&name);
        }
        Ok(())
    }

    // -------------------------------------------------------------------- result

    /// DeclarativeDecider.context: the child's enrich fields of the root.
    fn context(&self, root: Option<&Map>, ci: usize) -> Map {
        let mut m = map_with_capacity(self.ctx.enrich[ci].len());
        for f in &self.ctx.enrich[ci] {
            m.insert(f.clone(), root.and_then(|r| r.get(f)).cloned().unwrap_or(Val::Null));
        }
        m
    }

    /// DeclarativeDecider.full_data
    fn full_data(&self, root: &Map, embedded: &[(usize, Map)]) -> R<Map> {
        let mut data = root.clone();
        for (ci, name) in self.ctx.child_names.iter().enumerate() {
            let mut list = Vec::new();
            if let Some((_, coll)) = embedded.iter().find(|(c, _)| *c == ci) {
                list.reserve(coll.len());
                for f in coll.values() {
                    list.push(dict_val(f)?);
                }
            }
            data.insert(name.clone(), Val::List(Rc::new(list)));
        }
        Ok(data)
    }

    /// _split: (the first max_embedded_children children, in collection and insertion order; the others)
    fn split<'c>(&self, children: impl Iterator<Item = (usize, &'c Map)>) -> (Vec<(usize, Map)>, Vec<(usize, Key, Val)>) {
        let mut room = self.spec.max_embedded;
        let mut embedded = Vec::new();
        let mut overflow = Vec::new();
        for (ci, coll) in children {
            let mut kept = map_with_capacity(coll.len().min(room.max(0) as usize));
            for (cid, fields) in coll.iter() {
                if room > 0 {
                    kept.insert(cid.clone(), fields.clone());
                    room -= 1;
                } else {
                    overflow.push((ci, cid.clone(), fields.clone()));
                }
            }
            embedded.push((ci, kept));
        }
        (embedded, overflow)
    }

    fn finish(&mut self) -> R<()> {
        let (py, ctx, spec) = (self.py, self.ctx, self.spec);
        let root = self.root.clone();
        for ((ci, cid), at) in self.added_at.iter() {
            if self.out[*at].is_some() {
                let fields = self
                    .children
                    .get(&ctx.child_names[*ci])
                    .and_then(|c| c.get(cid))
                    .ok_or_else(|| unsupported!("an added child missing at the end (KeyError)"))?;
                let fields = as_dict(fields)?;
                let d = self.out[*at].as_mut().unwrap();
                d.data = (*fields).clone();
                d.fields = Some(fields);
            }
        }
        if let Some(created_at) = self.created_at {
            let root = root.clone().ok_or_else(|| unsupported!("a created root without fields"))?;
            let mut children = new_colls();
            for name in ctx.child_names.iter() {
                let c = self.children.get(name).cloned().unwrap_or_else(|| Rc::new(new_map()));
                children.insert(name.clone(), c);
            }
            let (embedded, overflow) = self.split(children.values().enumerate().map(|(ci, c)| (ci, &**c)));
            let data = self.full_data(&root, &embedded)?;
            let internal = {
                let d = self.out[created_at].as_mut().ok_or_else(|| unsupported!("created draft dropped"))?;
                d.data = data;
                d.root = Some(root.clone());
                d.children = Some(children);
                d.internal
            };
            if !overflow.is_empty() && !internal {
                // a large aggregate: the other children follow right after it, one added event each
                let mut extra = Vec::with_capacity(overflow.len());
                for (ci, cid, fields) in overflow {
                    let fields = as_dict(&fields)?;
                    let c = &spec.children[ci];
                    let mut d =
                        Draft::new(Name::Spec(c.added.clone_ref(py)), c.table.bind(py), (*fields).clone(), false, Kind::ChildAdded)
                            .child(ci, &cid);
                    d.fields = Some(fields);
                    extra.push(Some(d));
                }
                let at = created_at + 1;
                self.out.splice(at..at, extra);
            }
        }
        // Child events carry the root's context as of the end of the transaction.
        let contexts: Vec<Val> = (0..ctx.child_names.len())
            .map(|ci| Val::Dict(Rc::new(self.context(root.as_deref(), ci))))
            .collect();
        for d in self.out.iter_mut().flatten() {
            if d.kind.is_child() && !d.context_set {
                // each draft its own dict in the reference; equal values, so one shared copy here
                d.data.insert(ctx.context_key.clone(), contexts[d.entity].clone());
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------- evolve

fn evolve(ctx: &Ctx, state: &mut Map, d: &Draft) -> R<()> {
    match d.kind {
        Kind::Created | Kind::Snapshotted => {
            let mut s = map_with_capacity(5);
            s.insert(ctx.k_exists.clone(), Val::Bool(true));
            s.insert(ctx.k_deleted.clone(), Val::Bool(false));
            let root = d.root.clone().ok_or_else(|| unsupported!("created draft without root"))?;
            s.insert(ctx.k_root.clone(), Val::Dict(root));
            let mut children = new_map();
            for (n, c) in d.children.as_ref().ok_or_else(|| unsupported!("created draft without children"))? {
                children.insert(n.clone(), Val::Dict(c.clone()));
            }
            s.insert(ctx.k_children.clone(), Val::Dict(Rc::new(children)));
            s.insert(ctx.k_held.clone(), Val::empty_dict());
            *state = s;
        }
        Kind::Deleted => {
            let mut s = map_with_capacity(6);
            s.insert(ctx.k_exists.clone(), Val::Bool(false));
            s.insert(ctx.k_deleted.clone(), Val::Bool(true));
            let mut children = new_map();
            if let Some(dormant) = &d.dormant {
                s.insert(ctx.k_soft_deleted.clone(), Val::Bool(true));
                for (n, c) in dormant {
                    children.insert(n.clone(), Val::Dict(c.clone()));
                }
            }
            s.insert(ctx.k_root.clone(), Val::Null);
            s.insert(ctx.k_children.clone(), Val::Dict(Rc::new(children)));
            s.insert(ctx.k_held.clone(), Val::empty_dict());
            *state = s;
        }
        Kind::Updated => {
            let root = d.root.clone().ok_or_else(|| unsupported!("updated draft without root"))?;
            state.insert(ctx.k_root.clone(), Val::Dict(root));
        }
        Kind::ChildAdded | Kind::ChildChanged | Kind::ChildRemoved => {
            let id = d.entity_id.as_ref().unwrap();
            let children = dict_slot(state, &ctx.k_children)?;
            let coll = dict_slot(children, &ctx.child_names[d.entity])?;
            if d.kind == Kind::ChildRemoved {
                coll.shift_remove(id);
            } else {
                let f = d.fields.clone().ok_or_else(|| unsupported!("child draft without fields"))?;
                coll.insert(id.clone(), Val::Dict(f));
            }
        }
        Kind::Held | Kind::HeldChanged | Kind::HeldReleased => {
            let id = d.entity_id.as_ref().unwrap();
            let name = &ctx.child_names[d.entity];
            let held = dict_slot(state, &ctx.k_held)?;
            let empty = {
                let coll = dict_slot(held, name)?;
                match d.kind {
                    Kind::Held => {
                        coll.insert(id.clone(), Val::Dict(d.entry.clone().unwrap()));
                    }
                    Kind::HeldChanged => {
                        let cur = coll.get(id).ok_or_else(|| unsupported!("held_changed of a child not held (KeyError)"))?;
                        let mut e = (*as_dict(cur)?).clone();
                        e.insert(ctx.k_fields.clone(), Val::Dict(d.fields.clone().unwrap()));
                        coll.insert(id.clone(), Val::Dict(Rc::new(e)));
                    }
                    _ => {
                        coll.shift_remove(id);
                    }
                }
                coll.is_empty()
            };
            if empty {
                held.shift_remove(name);
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------- apply

fn initial_state(ctx: &Ctx) -> Map {
    let mut s = map_with_capacity(5);
    s.insert(ctx.k_exists.clone(), Val::Bool(false));
    s.insert(ctx.k_deleted.clone(), Val::Bool(false));
    s.insert(ctx.k_root.clone(), Val::Null);
    s.insert(ctx.k_children.clone(), Val::empty_dict());
    s.insert(ctx.k_held.clone(), Val::empty_dict());
    s
}

/// The commands of a Python sequence of tuples (see Layout).
fn commands_of<'py>(spec: &Spec, ctx: &Ctx, commands: &Bound<'py, PyAny>, at: &Layout, txn_vals: Option<&TxnVals>
) -> R<Vec<Cmd<'py>>> {
    let mut cmds = Vec::new();
    if let Ok(list) = commands.downcast::<PyList>() {
        cmds.reserve(list.len());
        for item in list.iter() {
            cmds.push(command(spec, ctx, &item, at, txn_vals)?);
        }
    } else {
        for item in commands.try_iter()? {
            cmds.push(command(spec, ctx, &item?, at, txn_vals)?);
        }
    }
    Ok(cmds)
}

/// DeclarativeCore.apply: see lib.rs.
/// decide + evolve of one aggregate instance: (new state, drafts, rejections).
fn run<'py>(
    py: Python<'py>,
    spec: &Spec,
    ctx: &Ctx,
    state_json: Option<&[u8]>,
    cmds: Vec<Cmd<'py>>,
    aggregate_id: &str,
) -> R<(Map, Vec<Draft<'py>>, Vec<(usize, &'static str, String)>)> {
    let mut state = match state_json {
        None => initial_state(ctx),
        Some(b) => match crate::json::loads_state(b)? {
            Val::Dict(d) => Rc::try_unwrap(d).unwrap_or_else(|d| (*d).clone()),
            other => return Err(unsupported!("a state that is a {}", other.type_name())),
        },
    };
    let mut txn = Txn::new(py, spec, ctx, aggregate_id, &state)?;
    txn.decide(&cmds)?;
    let drafts: Vec<Draft> = std::mem::take(&mut txn.out).into_iter().flatten().collect();
    let rejections = std::mem::take(&mut txn.rejections);
    drop(txn);
    for d in &drafts {
        evolve(ctx, &mut state, d)?;
    }
    Ok((state, drafts, rejections))
}

/// held_entries(state) as [(entity, entity_id, since)].
fn held_list<'py>(py: Python<'py>, ctx: &Ctx, state: &Map) -> R<Bound<'py, PyList>> {
    let mut held_out = Vec::new();
    match state.get(&ctx.k_held) {
        None => {}
        Some(v) if !v.truthy() => {}
        Some(held @ (Val::Dict(_) | Val::Raw(_))) => {
            let held = as_dict(held)?;
            for (entity, entries) in held.iter() {
                let entries = as_dict(entries)?;
                for (eid, entry) in entries.iter() {
                    let entry = as_dict(entry)?;
                    let since = entry
                        .get(&ctx.k_since)
                        .ok_or_else(|| unsupported!("a held entry without since"))?;
                    held_out.push(PyTuple::new(
                        py,
                        [PyString::new(py, entity).into_any(), PyString::new(py, eid).into_any(), to_py(py, since)?.into_bound(py)],
                    )?);
                }
            }
        }
        Some(v) => return Err(unsupported!("state['held'] is a {}", v.type_name())),
    }
    Ok(PyList::new(py, held_out)?)
}

fn rejection_list<'py>(py: Python<'py>, rejections: Vec<(usize, &'static str, String)>) -> R<Bound<'py, PyList>> {
    let mut rej_out = Vec::with_capacity(rejections.len());
    for (i, reason, detail) in rejections {
        rej_out.push(PyTuple::new(
            py,
            [
                i.into_pyobject(py)?.into_any(),
                PyString::new(py, reason).into_any(),
                PyString::new(py, &detail).into_any(),
            ],
        )?);
    }
    Ok(PyList::new(py, rej_out)?)
}

fn draft_name<'py>(py: Python<'py>, d: &Draft<'py>) -> Bound<'py, PyString> {
    match &d.name {
        Name::Spec(s) => s.bind(py).clone(),
        Name::Internal(s) => PyString::new(py, s),
    }
}

pub fn apply<'py>(
    py: Python<'py>,
    spec: &Spec,
    state_json: Option<&[u8]>,
    commands: &Bound<'py, PyAny>,
    aggregate_id: &Bound<'py, PyString>,
) -> R<Bound<'py, PyTuple>> {
    let ctx = Ctx::for_spec(spec);
    let ctx = &*ctx;
    let aggregate_id = py_str(aggregate_id)?;
    let cmds = commands_of(spec, ctx, commands, &CORE, None)?;
    let (state, drafts, rejections) = run(py, spec, ctx, state_json, cmds, aggregate_id)?;
    let held_out = held_list(py, ctx, &state)?;
    let state_bytes = PyBytes::new(py, &dumps_map(&state));
    let mut draft_out = Vec::with_capacity(drafts.len());
    for d in &drafts {
        draft_out.push(PyTuple::new(
            py,
            [
                draft_name(py, d).into_any(),
                d.table.clone().into_any(),
                PyBytes::new(py, &dumps_map(&d.data)).into_any(),
                PyBool::new(py, d.internal).to_owned().into_any(),
                PyBool::new(py, d.tombstone).to_owned().into_any(),
            ],
        )?);
    }
    Ok(PyTuple::new(
        py,
        [
            state_bytes.into_any(),
            PyList::new(py, draft_out)?.into_any(),
            rejection_list(py, rejections)?.into_any(),
            held_out.into_any(),
        ],
    )?)
}

/// What the events of one source transaction share (see apply_wire).
pub struct EventVals<'a> {
    pub sequence: i64,
    pub schema_version: i64,
    pub occurred_at: &'a str,
    pub source_tail: &'a [u8],
}

/// apply() for the wire form, with the published drafts numbered and enveloped:
/// (state_json, last sequence, events [(event_type, table, data_json, tombstone, value)], rejections, held).
/// `commands`: the wire tuples, or their packed form (bytes: crate::packed::pack_wire), read as they are.
pub fn apply_wire<'py>(
    py: Python<'py>,
    spec: &Spec,
    state_json: Option<&[u8]>,
    commands: &Bound<'py, PyAny>,
    aggregate_id: &Bound<'py, PyString>,
    txn_vals: &TxnVals,
    ev: &EventVals<'_>,
) -> R<Bound<'py, PyTuple>> {
    let ctx = Ctx::for_spec(spec);
    let ctx = &*ctx;
    let cmds = match commands.downcast::<PyBytes>() {
        Ok(packed) => {
            let items = match crate::json::loads(packed.as_bytes())? {
                Val::List(items) => items,
                _ => return Err(unsupported!("packed commands that are not a list")),
            };
            let mut cmds = Vec::with_capacity(items.len());
            for item in items.iter() {
                cmds.push(command_from_val(py, spec, ctx, item, txn_vals)?);
            }
            cmds
        }
        Err(_) => commands_of(spec, ctx, commands, &WIRE, Some(txn_vals))?,
    };
    finish_wire(py, spec, ctx, state_json, cmds, aggregate_id, ev)
}

fn finish_wire<'py>(
    py: Python<'py>,
    spec: &Spec,
    ctx: &Ctx,
    state_json: Option<&[u8]>,
    cmds: Vec<Cmd<'py>>,
    aggregate_id: &Bound<'py, PyString>,
    ev: &EventVals<'_>,
) -> R<Bound<'py, PyTuple>> {
    let aggregate_id_str = py_str(aggregate_id)?;
    let (state, drafts, rejections) = run(py, spec, ctx, state_json, cmds, aggregate_id_str)?;
    let held_out = held_list(py, ctx, &state)?;
    let state_bytes = PyBytes::new(py, &dumps_map(&state));
    let mut sequence = ev.sequence;
    let mut events = Vec::with_capacity(drafts.len());
    let mut source_json: Vec<u8> = Vec::with_capacity(64 + ev.source_tail.len());
    for d in &drafts {
        if d.internal {
            continue;
        }
        sequence = sequence.checked_add(1).ok_or_else(|| unsupported!("sequence beyond 64 bits"))?;
        let name = draft_name(py, d);
        let data_json = dumps_map(&d.data);
        source_json.clear();
        source_json.extend_from_slice(b"{\"table\":");
        crate::json::write_str(&mut source_json, py_str(&d.table)?);
        source_json.extend_from_slice(ev.source_tail);
        let value = crate::envelope_parts(
            py_str(&name)?, &spec.aggregate, aggregate_id_str, sequence, ev.schema_version, ev.occurred_at,
            &source_json, &data_json,
        )?;
        events.push(PyTuple::new(
            py,
            [
                name.into_any(),
                d.table.clone().into_any(),
                PyBytes::new(py, &data_json).into_any(),
                PyBool::new(py, d.tombstone).to_owned().into_any(),
                PyBytes::new(py, &value).into_any(),
            ],
        )?);
    }
    Ok(PyTuple::new(
        py,
        [
            state_bytes.into_any(),
            sequence.into_pyobject(py)?.into_any(),
            PyList::new(py, events)?.into_any(),
            rejection_list(py, rejections)?.into_any(),
            held_out.into_any(),
        ],
    )?)
}
