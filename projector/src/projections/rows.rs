//! The rows a batch writes to the Postgres read models, written with one statement per kind of
//! write rather than one per event: a batch of a thousand likes is one `INSERT` of a thousand
//! rows, not a thousand `INSERT`s (each a plan and an executor start in Postgres, and a
//! message each way).
//!
//! Every statement takes its rows as columns: `$1`, `$2`, ... are arrays holding the first,
//! second, ... value of each row (`unnest($1::bigint[], ...)`). What makes writing them
//! together right: a row written for an event belongs to that event's aggregate alone (a
//! like's row to its video and user, a comment's row to the comment), so the rows of different
//! aggregates commute, and only an aggregate's own rows need to be written in order. A batch is
//! cut into rounds: the first row of each aggregate, then the second, and so on; in a round no
//! two rows share an aggregate, so no two touch one row (an `ON CONFLICT DO UPDATE` refuses a
//! statement that would). Nearly every batch is one round; a conversation's messages are
//! the exception (one round a message of a batch, as before rows were written together).
//!
//! The projections refuse an event whose aggregate id is not the one its rows' keys make
//! (`Like::id` of the like's video and user, say): such an event, written by hand, would
//! otherwise share a round with its row's own aggregate.

use std::collections::HashMap;
use std::error::Error;

use bytes::BytesMut;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures::future::try_join_all;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

/// A value of a read model's column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Text(String),
    Time(DateTime<Utc>),
    Null,
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<DateTime<Utc>> for Value {
    fn from(value: DateTime<Utc>) -> Self {
        Self::Time(value)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Null, Into::into)
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        // Each checks the column's type against its own: an array of mixed values is refused.
        match self {
            Self::Int(value) => value.to_sql_checked(ty, out),
            Self::Text(value) => value.to_sql_checked(ty, out),
            Self::Time(value) => value.to_sql_checked(ty, out),
            Self::Null => Ok(IsNull::Yes),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
            || <String as ToSql>::accepts(ty)
            || <DateTime<Utc> as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// One row an event writes: a statement taking rows as columns (see the module's docs), and
/// this row's values, one a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub statement: &'static str,
    pub values: Vec<Value>,
}

/// A row to write, and the aggregate whose event wrote it.
pub type Write<'a> = ((&'a str, &'a str), &'a Row);

/// A statement and the rows it writes at once, as columns.
#[derive(Debug, PartialEq, Eq)]
pub struct Statement<'a> {
    pub sql: &'static str,
    pub columns: Vec<Vec<&'a Value>>,
}

/// The statements writing `writes` (given in the order their events apply), in the order to
/// run them: round by round (the n-th row of every aggregate in round n), within a round one
/// statement per kind, in the order each kind first comes.
pub fn statements<'a>(writes: impl IntoIterator<Item = Write<'a>>) -> Vec<Statement<'a>> {
    let mut rows_so_far: HashMap<(&str, &str), usize> = HashMap::new();
    // By round, then by kind in order of coming.
    let mut rounds: Vec<Vec<Statement<'a>>> = vec![];
    for (aggregate, row) in writes {
        let round = rows_so_far.entry(aggregate).or_default();
        if *round == rounds.len() {
            rounds.push(vec![]);
        }
        let statements = &mut rounds[*round];
        *round += 1;
        let statement = match statements.iter_mut().position(|s| s.sql == row.statement) {
            Some(at) => &mut statements[at],
            None => {
                statements.push(Statement {
                    sql: row.statement,
                    columns: vec![vec![]; row.values.len()],
                });
                statements.last_mut().expect("just pushed")
            }
        };
        // A row short of a value would be padded with NULLs by `unnest`, not refused.
        assert_eq!(
            statement.columns.len(),
            row.values.len(),
            "{}",
            row.statement
        );
        for (column, value) in statement.columns.iter_mut().zip(&row.values) {
            column.push(value);
        }
    }
    rounds.into_iter().flatten().collect()
}

/// Writes `writes`, the statements pipelined (see [`statements`]). Each kind of statement is
/// prepared once per connection (a round trip each, the first time).
pub async fn write<'a>(
    tx: &Transaction<'_>,
    writes: impl IntoIterator<Item = Write<'a>>,
) -> Result<(), tokio_postgres::Error> {
    let statements = statements(writes);
    let mut prepared = HashMap::new();
    for statement in &statements {
        if !prepared.contains_key(statement.sql) {
            prepared.insert(statement.sql, tx.prepare_cached(statement.sql).await?);
        }
    }
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = statements
        .iter()
        .map(|statement| {
            statement
                .columns
                .iter()
                .map(|column| column as &(dyn ToSql + Sync))
                .collect()
        })
        .collect();
    // The client sends the requests of futures polled together in the order first polled, so
    // they run in this order, and cost about one round trip in all.
    try_join_all(
        statements
            .iter()
            .zip(&params)
            .map(|(statement, params)| tx.execute(&prepared[statement.sql], params)),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIKE: &str = "like";
    const UNLIKE: &str = "unlike";

    fn row(statement: &'static str, value: i64) -> Row {
        Row {
            statement,
            values: vec![Value::Int(value)],
        }
    }

    fn shape(statements: &[Statement<'_>]) -> Vec<(&'static str, Vec<i64>)> {
        statements
            .iter()
            .map(|statement| {
                let values = statement.columns[0]
                    .iter()
                    .map(|value| match value {
                        Value::Int(value) => *value,
                        other => panic!("{other:?}"),
                    })
                    .collect();
                (statement.sql, values)
            })
            .collect()
    }

    #[test]
    fn rows_of_different_aggregates_are_written_by_one_statement_per_kind() {
        let rows = [row(LIKE, 1), row(UNLIKE, 2), row(LIKE, 3)];
        let writes = [
            (("like", "a"), &rows[0]),
            (("like", "b"), &rows[1]),
            (("like", "c"), &rows[2]),
        ];
        assert_eq!(
            shape(&statements(writes)),
            [(LIKE, vec![1, 3]), (UNLIKE, vec![2])]
        );
    }

    #[test]
    fn an_aggregates_rows_are_written_in_order_a_round_each() {
        // a: like, unlike, like; b: like. The unlike must come between a's two likes.
        let rows = [row(LIKE, 1), row(LIKE, 2), row(UNLIKE, 3), row(LIKE, 4)];
        let writes = [
            (("like", "a"), &rows[0]),
            (("like", "b"), &rows[1]),
            (("like", "a"), &rows[2]),
            (("like", "a"), &rows[3]),
        ];
        assert_eq!(
            shape(&statements(writes)),
            [(LIKE, vec![1, 2]), (UNLIKE, vec![3]), (LIKE, vec![4])]
        );
    }

    #[test]
    fn the_same_id_under_two_aggregate_types_is_two_aggregates() {
        let rows = [row(LIKE, 1), row(LIKE, 2)];
        let writes = [(("user", "7"), &rows[0]), (("video", "7"), &rows[1])];
        assert_eq!(shape(&statements(writes)), [(LIKE, vec![1, 2])]);
    }

    #[test]
    fn values_are_sent_as_their_own_types_and_nulls() {
        let mut out = BytesMut::new();
        assert!(Value::Int(5).to_sql_checked(&Type::INT8, &mut out).is_ok());
        assert!(Value::Int(5).to_sql_checked(&Type::TEXT, &mut out).is_err());
        assert!(matches!(
            Value::from(None::<String>).to_sql_checked(&Type::TEXT, &mut out),
            Ok(IsNull::Yes)
        ));
        assert!(vec![&Value::Int(1), &Value::Null]
            .to_sql_checked(&Type::INT8_ARRAY, &mut out)
            .is_ok());
    }
}
