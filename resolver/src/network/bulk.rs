//! Several user IDs at once: the names of one server are asked in one
//! `POST /_roam/v1/query` (spec/api.md), and each bundle in the answer goes through the same
//! verification, binding check and answer as a single `resolve_user`. A server that cannot
//! answer the query (an older server, a failure) is asked name by name, so the bulk path never
//! changes an answer, only the number of round trips.

use std::collections::BTreeMap;

use roam_identity_core::{ServerName, UserId};
use serde_json::{Value, json};

use super::verify::{OnlineFailure, invalid};
use super::{NetworkResolver, Subject};
use crate::discovery::endpoint;
use crate::error::ResolveError;
use crate::{ResolveResult, Resolver};

/// The most names one query carries (the server's bound).
pub const QUERY_MAX_NAMES: usize = 100;

impl NetworkResolver {
    /// Resolves `users`, answering in the same order: names of one server (two or more) in
    /// bulk queries of at most [`QUERY_MAX_NAMES`], the others one by one.
    pub async fn resolve_users(&self, users: &[UserId]) -> Vec<ResolveResult> {
        let mut by_server: BTreeMap<ServerName, Vec<usize>> = BTreeMap::new();
        for (i, u) in users.iter().enumerate() {
            by_server.entry(u.server_name()).or_default().push(i);
        }
        let mut out: Vec<Option<ResolveResult>> = users.iter().map(|_| None).collect();
        for (server, idx) in by_server {
            if idx.len() < 2 || self.is_offline() {
                for i in idx {
                    out[i] = Some(self.resolve_user(&users[i]).await);
                }
                continue;
            }
            for chunk in idx.chunks(QUERY_MAX_NAMES) {
                let names: Vec<&UserId> = chunk.iter().map(|&i| &users[i]).collect();
                let answers = self.query_server(&server, &names).await;
                for (&i, answer) in chunk.iter().zip(answers) {
                    out[i] = Some(answer);
                }
            }
        }
        out.into_iter().flatten().collect()
    }

    /// One bulk query to `server` for `names` (all of that server), each answer verified.
    async fn query_server(&self, server: &ServerName, names: &[&UserId]) -> Vec<ResolveResult> {
        let now = self.inner.clock.now_ms();
        let base = self.discover(server, now).await;
        let url = endpoint(&base, &["_roam", "v1", "query"]);
        let body = json!({"user_ids": names.iter().map(|u| u.as_str()).collect::<Vec<_>>()});
        let answer = match self.inner.client.post_json(&url, &body).await {
            Ok(v) if v.get("users").is_some_and(Value::is_object) => v,
            // Not a server that answers queries, or unreachable: one by one, as before.
            _ => {
                let mut out = Vec::with_capacity(names.len());
                for u in names {
                    out.push(self.resolve_user(u).await);
                }
                return out;
            }
        };
        let mut out = Vec::with_capacity(names.len());
        for user in names {
            let one = endpoint(&base, &Subject::User(user).path());
            let fetched = match answer["users"].get(user.as_str()) {
                Some(bundle) => Ok(bundle.clone()),
                None if listed(&answer, user) => Err(OnlineFailure::Resolve(not_found(user))),
                None => Err(invalid(format!("{url} left {user} out of its answer"))),
            };
            out.push(
                self.answer_user(user, None, now, (&base, &one), fetched)
                    .await,
            );
        }
        out
    }
}

fn listed(answer: &Value, user: &UserId) -> bool {
    answer["not_found"]
        .as_array()
        .is_some_and(|a| a.iter().any(|n| n.as_str() == Some(user.as_str())))
}

fn not_found(user: &UserId) -> ResolveError {
    ResolveError::NotFound {
        subject: user.to_string(),
        detail: format!("{} has no such user", user.server_name()),
    }
}
