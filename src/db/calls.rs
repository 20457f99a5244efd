//! ⑥ The typed calls handlers make, one per job — `ctx.db.get_user(id).await` is a
//! `Result<Option<User>, DbError>` — derived from the rows of `db::jobs`'s table, so a
//! handler names what it wants and gets the type the job's row declares.

use super::client::{Answer, DbClient};
use super::jobs::{Job, Output, Page};
// Every model type, so a new resource's rows in the table need no line here.
use super::model::*;

macro_rules! define_calls {
    ($conn:ident; $(
        $(#[doc = $doc:literal])*
        $(#[cfg($cfg:meta)])?
        $name:ident $({ $($field:ident : $ty:ty),* $(,)? })? -> $out:ty => $label:literal, $call:ident, $run:expr;
    )*) => {
        impl DbClient {
            $(
                $(#[doc = $doc])*
                $(#[cfg($cfg)])?
                #[doc = concat!("\n\nSubmitted at once (a full queue answers at the first await); answers `", stringify!($out), "`.")]
                pub(crate) fn $call(&self $(, $($field: $ty),*)?) -> Answer<'_, $out> {
                    self.ask(Job::$name $({ $($field),* })?, |output| match output {
                        Output::$name(out) => Ok(out),
                        other => Err(other),
                    })
                }
            )*
        }
    };
}

super::jobs::job_table!(define_calls);
