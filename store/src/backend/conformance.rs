//! The contract of [`Backend`], as tests generic over the implementation. Every backend runs
//! all of them (today: redb).

use std::ops::ControlFlow;

use super::redb::RedbBackend;
use super::{Backend, BackendError, ReadTables, Table};

fn collect<R: ReadTables + ?Sized>(
    r: &R,
    table: Table,
    start: &[u8],
    end: Option<&[u8]>,
    reverse: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    r.scan(table, start, end, reverse, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        ControlFlow::Continue(())
    })
    .expect("scan");
    out
}

fn put_all<B: Backend>(b: &B, group: u64, table: Table, kvs: &[(&[u8], &[u8])]) {
    b.write(group, true, |w| {
        for (k, v) in kvs {
            w.put(table, k, v)?;
        }
        Ok::<_, BackendError>(())
    })
    .expect("write");
}

fn committed_writes_are_visible_and_ordered<B: Backend>(b: &B) {
    put_all(
        b,
        0,
        Table::Live,
        &[(b"b", b"2"), (b"a", b"1"), (b"c", b"3")],
    );
    let r = b.read(0).expect("read");
    assert_eq!(r.get(Table::Live, b"a").expect("get"), Some(b"1".to_vec()));
    assert_eq!(r.get(Table::Live, b"z").expect("get"), None);
    let keys: Vec<_> = collect(&r, Table::Live, b"", None, false)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    let rev: Vec<_> = collect(&r, Table::Live, b"a", Some(b"c"), true)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(rev, vec![b"b".to_vec(), b"a".to_vec()]);
    assert!(collect(&r, Table::Live, b"c", Some(b"a"), false).is_empty());
}

fn failed_write_leaves_nothing<B: Backend>(b: &B) {
    let res: Result<(), BackendError> = b.write(0, true, |w| {
        w.put(Table::Live, b"x", b"1")?;
        Err(BackendError::Engine("refused".into()))
    });
    assert!(res.is_err());
    assert_eq!(
        b.read(0)
            .expect("read")
            .get(Table::Live, b"x")
            .expect("get"),
        None
    );
}

fn snapshot_does_not_see_later_writes<B: Backend>(b: &B) {
    put_all(b, 0, Table::Meta, &[(b"k", b"old")]);
    let before = b.read(0).expect("read");
    put_all(b, 0, Table::Meta, &[(b"k", b"new"), (b"k2", b"v")]);
    assert_eq!(
        before.get(Table::Meta, b"k").expect("get"),
        Some(b"old".to_vec())
    );
    assert_eq!(before.get(Table::Meta, b"k2").expect("get"), None);
    assert_eq!(
        b.read(0)
            .expect("read")
            .get(Table::Meta, b"k")
            .expect("get"),
        Some(b"new".to_vec())
    );
}

fn groups_are_disjoint<B: Backend>(b: &B) {
    put_all(b, 7, Table::Revs, &[(b"r", b"seven")]);
    assert_eq!(
        b.read(0)
            .expect("read")
            .get(Table::Revs, b"r")
            .expect("get"),
        None
    );
    assert_eq!(
        b.read(7)
            .expect("read")
            .get(Table::Revs, b"r")
            .expect("get"),
        Some(b"seven".to_vec())
    );
    assert!(b.groups().expect("groups").contains(&7));
}

fn delete_and_clear<B: Backend>(b: &B) {
    put_all(
        b,
        3,
        Table::History,
        &[(b"a", b""), (b"b", b""), (b"c", b"")],
    );
    b.write(3, false, |w| w.delete(Table::History, b"b"))
        .expect("delete");
    assert_eq!(
        collect(&b.read(3).expect("read"), Table::History, b"", None, false).len(),
        2
    );
    b.write(3, true, |w| w.clear(Table::History))
        .expect("clear");
    assert!(collect(&b.read(3).expect("read"), Table::History, b"", None, false).is_empty());
}

fn writes_see_their_own_changes<B: Backend>(b: &B) {
    b.write(4, true, |w| {
        w.put(Table::Live, b"k", b"v")?;
        assert_eq!(w.get(Table::Live, b"k")?, Some(b"v".to_vec()));
        let mut n = 0;
        w.scan(Table::Live, b"", None, false, &mut |_, _| {
            n += 1;
            ControlFlow::Continue(())
        })?;
        assert_eq!(n, 1);
        Ok::<_, BackendError>(())
    })
    .expect("write");
}

/// Every table of [`Table::ALL`] (the auth users and roles too) keeps its own entries, in one
/// write, apart from the other tables and from the same table of another group.
fn every_table_is_its_own<B: Backend>(b: &B) {
    b.write(5, true, |w| {
        for table in Table::ALL {
            w.put(table, b"k", table.name().as_bytes())?;
        }
        Ok::<_, BackendError>(())
    })
    .expect("write");
    let r = b.read(5).expect("read");
    for table in Table::ALL {
        assert_eq!(
            collect(&r, table, b"", None, false),
            vec![(b"k".to_vec(), table.name().as_bytes().to_vec())],
            "{table:?}"
        );
    }
    let other = b.read(6).expect("read");
    for table in Table::ALL {
        assert!(
            collect(&other, table, b"", None, false).is_empty(),
            "{table:?}"
        );
    }
    b.write(5, true, |w| w.clear(Table::AuthUsers))
        .expect("clear");
    let r = b.read(5).expect("read");
    assert!(collect(&r, Table::AuthUsers, b"", None, false).is_empty());
    assert_eq!(collect(&r, Table::AuthRoles, b"", None, false).len(), 1);
}

fn run_all<B: Backend>(make: impl Fn() -> B) {
    committed_writes_are_visible_and_ordered(&make());
    failed_write_leaves_nothing(&make());
    snapshot_does_not_see_later_writes(&make());
    groups_are_disjoint(&make());
    delete_and_clear(&make());
    writes_see_their_own_changes(&make());
    every_table_is_its_own(&make());
}

#[test]
fn redb_backend_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = std::cell::Cell::new(0);
    run_all(|| {
        n.set(n.get() + 1);
        RedbBackend::open(dir.path().join(format!("db{}", n.get()))).expect("open")
    });
}

#[test]
fn redb_reopen_keeps_committed_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    {
        let b = RedbBackend::open(&path).expect("open");
        put_all(&b, 0, Table::Meta, &[(b"applied", b"42")]);
    }
    let b = RedbBackend::open(&path).expect("reopen");
    assert_eq!(
        b.read(0)
            .expect("read")
            .get(Table::Meta, b"applied")
            .expect("get"),
        Some(b"42".to_vec())
    );
    assert!(b.size().expect("size").file_bytes > 0);
}
