//! Every database job, declared once: its fields, what it answers, its name (the `query`
//! label of db_query_duration_seconds), the typed call handlers make, and how it runs on a
//! connection. Two macros read these rows: [`super`] derives the job, its output and how
//! it runs; `db::calls` derives the typed call on `DbClient`. A job's run must produce the
//! type its row declares and its caller receives that type: a mismatch does not compile.
//!
//! Adding a job is a row here and its function in the resource's file.

/// Hands the rows to the macro `$m`.
macro_rules! job_table {
    ($m:ident) => {
        $m! { conn;
            /// A page of users by id, with one row more than asked when there is a next page.
            ListUsers { page: Page } -> Vec<User> => "list_users", list_users, users::list(conn, page).await;
            CreateUser { name: String, email: String } -> User => "create_user", create_user,
                users::create(conn, &name, &email).await;
            GetUser { id: i64 } -> Option<User> => "get_user", get_user, users::get(conn, id).await;
            UpdateUser { id: i64, name: Option<String>, email: Option<String> } -> Option<User> => "update_user", update_user,
                users::update(conn, id, name.as_deref(), email.as_deref()).await;
            /// Whether there was such a user.
            DeleteUser { id: i64 } -> bool => "delete_user", delete_user, users::delete(conn, id).await;
            /// A page of a user's orders (one row more when there is a next page); `None`: no such user.
            ListOrders { user_id: i64, page: Page } -> Option<Vec<Order>> => "list_orders", list_orders,
                orders::list(conn, user_id, page).await;
            /// `None`: no such user.
            CreateOrder { user_id: i64, item: String, quantity: i32, price_cents: i64 } -> Option<Order> => "create_order", create_order,
                orders::create(conn, user_id, &item, quantity, price_cents).await;
            /// The newest orders of a user, newest first (the summary).
            RecentOrders { user_id: i64, limit: u32 } -> Vec<Order> => "recent_orders", recent_orders,
                orders::recent(conn, user_id, limit).await;
            /// The preferences object as JSON text; `None`: no such user.
            GetPreferences { user_id: i64 } -> Option<String> => "get_preferences", get_preferences,
                preferences::get(conn, user_id).await;
            /// The stored object as JSON text; `None`: no such user.
            PutPreferences { user_id: i64, json: String } -> Option<String> => "put_preferences", put_preferences,
                preferences::put(conn, user_id, &json).await;
            /// The guide's example (docs/adding-a-resource.md): a page of products by id.
            #[cfg(feature = "example-resource")]
            ListProducts { page: Page } -> Vec<Product> => "list_products", list_products, products::list(conn, page).await;
            #[cfg(feature = "example-resource")]
            CreateProduct { name: String, price_cents: i64 } -> Product => "create_product", create_product,
                products::create(conn, &name, price_cents).await;
            #[cfg(feature = "example-resource")]
            GetProduct { id: i64 } -> Option<Product> => "get_product", get_product, products::get(conn, id).await;
            /// TechEmpower: one world.
            World { id: i32 } -> Option<World> => "world", world, bench::world(conn, id).await;
            /// TechEmpower: several worlds, one query each.
            Worlds { ids: Vec<i32> } -> Vec<World> => "worlds", worlds, bench::worlds(conn, &ids).await;
            /// TechEmpower: every fortune.
            Fortunes -> Fortunes => "fortunes", fortunes, bench::fortunes(conn).await;
            /// TechEmpower: give the worlds `ids[i]` the numbers `numbers[i]`.
            UpdateWorlds { ids: Vec<i32>, numbers: Vec<i32> } -> Vec<World> => "update_worlds", update_worlds,
                bench::update(conn, &ids, &numbers).await;
        }
    };
}

pub(crate) use job_table;
