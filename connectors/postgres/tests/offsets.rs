//! The sink's exactly-once positions against a real PostgreSQL server: stored with the rows
//! in one transaction (a rolled-back transaction stores neither), read back, and a task
//! fenced out once its successor has claimed the connector, even in the middle of a
//! transaction.

#[path = "../../../tests/support/pg.rs"]
mod pg;

use sluice_connector_postgres::offsets::{self, Epoch, OffsetsError};
use tokio_postgres::NoTls;

async fn connect(conn: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(conn, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_commit_with_the_rows_and_a_zombie_is_fenced_out() {
    let server = pg::PgServer::start();
    let conn = server.connection("postgres");
    let mut first = connect(&conn).await;
    offsets::ensure_tables(&first).await.unwrap();
    offsets::ensure_tables(&first).await.unwrap(); // again: no error
    first
        .batch_execute("CREATE TABLE orders (id bigint PRIMARY KEY, note text)")
        .await
        .unwrap();
    let epoch = offsets::claim(&first, "replica").await.unwrap();
    assert_eq!(epoch, Epoch(1));
    assert!(offsets::read(&first, "replica").await.unwrap().is_empty());

    // Rows and positions in one transaction.
    let tx = first.transaction().await.unwrap();
    tx.execute("INSERT INTO orders VALUES (1, 'a'), (2, 'b')", &[])
        .await
        .unwrap();
    let positions = vec![("orders".to_string(), 0, 2), ("orders".to_string(), 1, 7)];
    offsets::store(&tx, "replica", epoch, &positions)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(offsets::read(&first, "replica").await.unwrap(), positions);

    // A transaction rolled back stores neither rows nor positions.
    let tx = first.transaction().await.unwrap();
    tx.execute("INSERT INTO orders VALUES (3, 'c')", &[])
        .await
        .unwrap();
    offsets::store(&tx, "replica", epoch, &[("orders".to_string(), 0, 3)])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(offsets::read(&first, "replica").await.unwrap(), positions);
    let count: i64 = first
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2);

    // A successor claims the connector while the first task is inside a transaction: the
    // claim waits for that commit (the fence row is locked), then the first task is fenced.
    let tx = first.transaction().await.unwrap();
    tx.execute("INSERT INTO orders VALUES (3, 'c')", &[])
        .await
        .unwrap();
    offsets::store(&tx, "replica", epoch, &[("orders".to_string(), 0, 3)])
        .await
        .unwrap();
    let successor = connect(&conn).await;
    let claiming = tokio::spawn(async move {
        let e = offsets::claim(&successor, "replica").await.unwrap();
        let read = offsets::read(&successor, "replica").await.unwrap();
        (e, read)
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !claiming.is_finished(),
        "the claim waits for the commit in progress"
    );
    tx.commit().await.unwrap();
    let (second, seen) = claiming.await.unwrap();
    assert_eq!(second, Epoch(2));
    assert_eq!(
        seen[0],
        ("orders".to_string(), 0, 3),
        "the successor sees the last commit"
    );

    let tx = first.transaction().await.unwrap();
    let fenced = offsets::store(&tx, "replica", epoch, &[("orders".to_string(), 0, 4)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            fenced,
            OffsetsError::Fenced {
                ours: 1,
                current: 2,
                ..
            }
        ),
        "{fenced}"
    );
    assert!(!fenced.is_retriable());
    assert!(
        fenced
            .to_string()
            .contains("a newer task (epoch 2) has taken over"),
        "{fenced}"
    );
    tx.rollback().await.unwrap();

    // Positions are per connector.
    let other = offsets::claim(&first, "other").await.unwrap();
    assert_eq!(other, Epoch(1));
    assert!(offsets::read(&first, "other").await.unwrap().is_empty());
    let tx = first.transaction().await.unwrap();
    let error = offsets::store(&tx, "nobody", Epoch(1), &[])
        .await
        .unwrap_err();
    assert!(matches!(error, OffsetsError::NoClaim { .. }), "{error}");
}
