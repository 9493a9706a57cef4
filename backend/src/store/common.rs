//! Statements that are the same text and the same Rust on both backends, expanded once
//! per backend. A macro rather than generic code over `sqlx::Database`: the trait
//! bounds that generic sqlx code needs are longer than the statements themselves.

/// The `Store` methods whose SQL both dialects share. `$backend_specific` holds the
/// methods that differ.
macro_rules! impl_store {
    ($ty:ty, $backend:expr, { $($backend_specific:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $ty {
            fn backend(&self) -> $crate::store::Backend {
                $backend
            }

            async fn ping(&self) -> $crate::store::Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn create_source(
                &self,
                name: &str,
                format: &str,
                token_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<$crate::store::Source> {
                let sql = format!(
                    "INSERT INTO sources (name, format, token_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING {}",
                    $crate::store::rows::SOURCE_COLUMNS
                );
                let row: $crate::store::rows::SourceRow = sqlx::query_as(&sql)
                    .bind(name)
                    .bind(format)
                    .bind(token_hash)
                    .bind($crate::store::ms(now))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| match $crate::store::StoreError::from(e) {
                        $crate::store::StoreError::Conflict(_) => {
                            $crate::store::StoreError::Conflict(format!("source {name:?}"))
                        }
                        other => other,
                    })?;
                Ok(row.into())
            }

            async fn list_sources(&self) -> $crate::store::Result<Vec<$crate::store::Source>> {
                let sql = format!("SELECT {} FROM sources ORDER BY name", $crate::store::rows::SOURCE_COLUMNS);
                let rows: Vec<$crate::store::rows::SourceRow> =
                    sqlx::query_as(&sql).fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn set_source_keys(
                &self,
                name: &str,
                keys: &$crate::store::SourceKeys,
            ) -> $crate::store::Result<bool> {
                let r = sqlx::query(
                    "UPDATE sources SET secret = $1, public_key = $2, webhook_url = $3 WHERE name = $4",
                )
                .bind(keys.secret.as_deref())
                .bind(keys.public_key.as_deref())
                .bind(keys.webhook_url.as_deref())
                .bind(name)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn source_by_token(
                &self,
                token_hash: &str,
            ) -> $crate::store::Result<Option<$crate::store::Source>> {
                let sql = format!(
                    "SELECT {} FROM sources WHERE token_hash = $1 AND revoked_at IS NULL",
                    $crate::store::rows::SOURCE_COLUMNS
                );
                let row: Option<$crate::store::rows::SourceRow> =
                    sqlx::query_as(&sql).bind(token_hash).fetch_optional(&self.pool).await?;
                Ok(row.map(Into::into))
            }

            async fn rotate_source_token(&self, name: &str, token_hash: &str) -> $crate::store::Result<bool> {
                let r = sqlx::query("UPDATE sources SET token_hash = $1, revoked_at = NULL WHERE name = $2")
                    .bind(token_hash)
                    .bind(name)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn revoke_source(
                &self,
                name: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<bool> {
                let r = sqlx::query("UPDATE sources SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
                    .bind($crate::store::ms(now))
                    .bind(name)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn create_api_token(
                &self,
                name: &str,
                token_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<$crate::store::ApiToken> {
                let row: $crate::store::rows::TokenRow = sqlx::query_as(
                    "INSERT INTO api_tokens (name, token_hash, created_at) VALUES ($1, $2, $3) \
                     RETURNING id, name, created_at, revoked_at",
                )
                .bind(name)
                .bind(token_hash)
                .bind($crate::store::ms(now))
                .fetch_one(&self.pool)
                .await
                .map_err(|e| match $crate::store::StoreError::from(e) {
                    $crate::store::StoreError::Conflict(_) => {
                        $crate::store::StoreError::Conflict(format!("API token {name:?}"))
                    }
                    other => other,
                })?;
                Ok(row.into())
            }

            async fn list_api_tokens(&self) -> $crate::store::Result<Vec<$crate::store::ApiToken>> {
                let rows: Vec<$crate::store::rows::TokenRow> = sqlx::query_as(
                    "SELECT id, name, created_at, revoked_at FROM api_tokens ORDER BY name",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn api_token_by_hash(
                &self,
                token_hash: &str,
            ) -> $crate::store::Result<Option<$crate::store::ApiToken>> {
                let row: Option<$crate::store::rows::TokenRow> = sqlx::query_as(
                    "SELECT id, name, created_at, revoked_at FROM api_tokens \
                     WHERE token_hash = $1 AND revoked_at IS NULL",
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn revoke_api_token(
                &self,
                name: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<bool> {
                let r = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
                    .bind($crate::store::ms(now))
                    .bind(name)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn record_events(
                &self,
                batches: &[$crate::store::WriteBatch],
                engine: &$crate::incidents::Engine,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<Vec<$crate::store::BatchOutcome>> {
                let tx = self.begin_write().await?;
                $crate::store::commit::record(tx, batches, engine, now).await
            }

            async fn sweep(
                &self,
                engine: &$crate::incidents::Engine,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<$crate::store::SweepReport> {
                let tx = self.begin_write().await?;
                $crate::store::commit::sweep(tx, engine, now).await
            }

            async fn reclassify_page(
                &self,
                after: i64,
                limit: i64,
                classifier: &$crate::smtp::Classifier,
                engine: &$crate::incidents::Engine,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<$crate::store::ReclassifyPage> {
                let tx = self.begin_write().await?;
                $crate::store::commit::reclassify_page(tx, after, limit, classifier, engine, now).await
            }

            async fn list_incidents(
                &self,
                filter: &$crate::store::IncidentFilter,
            ) -> $crate::store::Result<Vec<$crate::incidents::Incident>> {
                let (sql, args) = $crate::store::rows::incident_list_sql(filter);
                let mut q = sqlx::query_as::<_, $crate::store::rows::IncidentRow>(&sql);
                for a in args {
                    q = match a {
                        $crate::store::rows::Arg::I64(v) => q.bind(v),
                        $crate::store::rows::Arg::Str(v) => q.bind(v),
                    };
                }
                q.fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(|r| r.into_incident())
                    .collect()
            }

            async fn incident(&self, id: i64) -> $crate::store::Result<Option<$crate::incidents::Incident>> {
                let row: Option<$crate::store::rows::IncidentRow> =
                    sqlx::query_as($crate::store::rows::INCIDENT_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(|r| r.into_incident()).transpose()
            }

            async fn open_incidents_by_phase(&self) -> $crate::store::Result<Vec<(String, i64)>> {
                Ok(sqlx::query_as($crate::store::rows::OPEN_BY_PHASE)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn list_events(
                &self,
                filter: &$crate::store::EventFilter,
            ) -> $crate::store::Result<Vec<$crate::event::StoredEvent>> {
                let (sql, args) = $crate::store::rows::event_list_sql(filter);
                let mut q = sqlx::query_as::<_, $crate::store::rows::EventRow>(&sql);
                for a in args {
                    q = match a {
                        $crate::store::rows::Arg::I64(v) => q.bind(v),
                        $crate::store::rows::Arg::Str(v) => q.bind(v),
                    };
                }
                q.fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect()
            }

            async fn list_dead_letters(
                &self,
                after: Option<i64>,
                limit: i64,
            ) -> $crate::store::Result<Vec<$crate::store::DeadLetter>> {
                let rows: Vec<$crate::store::rows::DeadLetterRow> =
                    sqlx::query_as($crate::store::rows::DEAD_LETTERS)
                        .bind(after.unwrap_or(0))
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn record_checks(
                &self,
                report: &$crate::checks::CheckReport,
            ) -> $crate::store::Result<Vec<$crate::checks::CheckChange>> {
                let mut w = self.begin_write().await?;
                let previous: Vec<$crate::store::StoredCheck> =
                    sqlx::query_as::<_, $crate::store::rows::CheckRow>($crate::store::rows::LATEST_CHECKS)
                        .bind(&report.subject)
                        .fetch_all(&mut *w.tx)
                        .await?
                        .into_iter()
                        .map(Into::into)
                        .collect();
                let at = $crate::store::ms(report.checked_at);
                let mut changes = Vec::new();
                for r in &report.checks {
                    let records = serde_json::to_string(&r.records).unwrap_or_else(|_| "[]".into());
                    sqlx::query(
                        "INSERT INTO check_results (subject, name, verdict, detail, records, checked_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&report.subject)
                    .bind(&r.name)
                    .bind(r.verdict.as_str())
                    .bind(&r.detail)
                    .bind(records)
                    .bind(at)
                    .execute(&mut *w.tx)
                    .await?;
                    let Some(prev) = previous.iter().find(|p| p.result.name == r.name) else {
                        continue;
                    };
                    if let Some(change) = $crate::checks::detect_change(&prev.result, r) {
                        sqlx::query(
                            "INSERT INTO check_changes (subject, name, previous, verdict, description, at) \
                             VALUES ($1, $2, $3, $4, $5, $6)",
                        )
                        .bind(&report.subject)
                        .bind(&r.name)
                        .bind(change.previous.as_str())
                        .bind(change.current.as_str())
                        .bind(&change.description)
                        .bind(at)
                        .execute(&mut *w.tx)
                        .await?;
                        changes.push(change);
                    }
                }
                w.tx.commit().await?;
                Ok(changes)
            }

            async fn latest_checks(&self, subject: &str) -> $crate::store::Result<Vec<$crate::store::StoredCheck>> {
                let rows: Vec<$crate::store::rows::CheckRow> = sqlx::query_as($crate::store::rows::LATEST_CHECKS)
                    .bind(subject)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn check_history(
                &self,
                subject: &str,
                limit: i64,
            ) -> $crate::store::Result<Vec<$crate::store::StoredCheck>> {
                let rows: Vec<$crate::store::rows::CheckRow> = sqlx::query_as($crate::store::rows::CHECK_HISTORY)
                    .bind(subject)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn check_changes(
                &self,
                subjects: &[String],
                since: Option<chrono::DateTime<chrono::Utc>>,
                limit: i64,
            ) -> $crate::store::Result<Vec<$crate::store::StoredCheckChange>> {
                if subjects.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = $crate::store::rows::check_changes_sql(subjects.len(), since.is_some());
                let mut q = sqlx::query_as::<_, $crate::store::rows::CheckChangeRow>(&sql);
                for s in subjects {
                    q = q.bind(s);
                }
                if let Some(t) = since {
                    q = q.bind($crate::store::ms(t));
                }
                let rows = q.bind(limit).fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn prune(
                &self,
                before: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<$crate::store::PruneReport> {
                let mut report = $crate::store::PruneReport::default();
                // Small batches keep each delete short, so ingest is never held up
                // behind a long retention sweep.
                loop {
                    let n = sqlx::query($crate::store::rows::PRUNE_EVENTS)
                        .bind($crate::store::ms(before))
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                    report.events += n;
                    if n == 0 {
                        break;
                    }
                }
                loop {
                    let n = sqlx::query($crate::store::rows::PRUNE_CHECKS)
                        .bind($crate::store::ms(before))
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                    report.check_results += n;
                    if n == 0 {
                        break;
                    }
                }
                loop {
                    let n = sqlx::query($crate::store::rows::PRUNE_DEAD_LETTERS)
                        .bind($crate::store::ms(before))
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                    report.dead_letters += n;
                    if n == 0 {
                        break;
                    }
                }
                // Finished notifications go with the rest; their dedupe keys are safe
                // to drop because the notifier never looks further back than its
                // `max_age` (a day by default), far inside any retention.
                sqlx::query("DELETE FROM notifications WHERE finished_at IS NOT NULL AND finished_at < $1")
                    .bind($crate::store::ms(before))
                    .execute(&self.pool)
                    .await?;
                Ok(report)
            }

            $($backend_specific)*
        }
    };
}

/// The `WriteTx` primitives whose SQL both dialects share; `$backend_specific` holds
/// the ones that differ.
macro_rules! impl_write_tx {
    ($ty:ty, { $($backend_specific:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::store::commit::WriteTx for $ty {
        $($backend_specific)*

        async fn insert_incident(
            &mut self,
            row: &$crate::store::commit::IncidentRowData<'_>,
        ) -> $crate::store::Result<i64> {
            let inc = row.inc;
            let (id,): (i64,) = sqlx::query_as($crate::store::rows::INSERT_INCIDENT)
                .bind(&inc.destination)
                .bind(inc.status.as_str())
                .bind(inc.phase.as_str())
                .bind($crate::store::ms(inc.first_seen))
                .bind($crate::store::ms(inc.last_seen))
                .bind(inc.closed_at.map($crate::store::ms))
                .bind(row.due_at)
                .bind(inc.counts.deferred as i64)
                .bind(inc.counts.delivered as i64)
                .bind(inc.counts.bounced as i64)
                .bind(row.now_ms)
                .bind(&row.state)
                .fetch_one(&mut *self.tx)
                .await?;
            Ok(id)
        }

        async fn update_incident(
            &mut self,
            row: &$crate::store::commit::IncidentRowData<'_>,
        ) -> $crate::store::Result<()> {
            let inc = row.inc;
            sqlx::query($crate::store::rows::UPDATE_INCIDENT)
                .bind(&inc.destination)
                .bind(inc.status.as_str())
                .bind(inc.phase.as_str())
                .bind($crate::store::ms(inc.first_seen))
                .bind($crate::store::ms(inc.last_seen))
                .bind(inc.closed_at.map($crate::store::ms))
                .bind(row.due_at)
                .bind(inc.counts.deferred as i64)
                .bind(inc.counts.delivered as i64)
                .bind(inc.counts.bounced as i64)
                .bind(row.now_ms)
                .bind(&row.state)
                .bind(inc.id)
                .execute(&mut *self.tx)
                .await?;
            Ok(())
        }

        async fn insert_rejects(
            &mut self,
            rejects: &[&$crate::store::NewReject],
        ) -> $crate::store::Result<()> {
            for r in rejects {
                sqlx::query(
                    "INSERT INTO dead_letters (source_id, received_at, item_index, field, reason, raw) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(r.source_id)
                .bind($crate::store::ms(r.received_at))
                .bind(r.index.and_then(|i| i32::try_from(i).ok()))
                .bind(&r.field)
                .bind(&r.reason)
                .bind(&r.raw)
                .execute(&mut *self.tx)
                .await?;
            }
            Ok(())
        }

        async fn touch_sources(&mut self, source_ids: &[i64], now_ms: i64) -> $crate::store::Result<()> {
            for id in source_ids {
                sqlx::query("UPDATE sources SET last_event_at = $1 WHERE id = $2")
                    .bind(now_ms)
                    .bind(id)
                    .execute(&mut *self.tx)
                    .await?;
            }
            Ok(())
        }

        async fn touch_ips(&mut self, ips: &[(&str, i64, i64, Option<&str>)]) -> $crate::store::Result<()> {
            for (ip, first, last, helo) in ips {
                sqlx::query(
                    "INSERT INTO sending_ips (ip, first_seen, last_seen, helo) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (ip) DO UPDATE SET \
                     first_seen = CASE WHEN excluded.first_seen < sending_ips.first_seen THEN excluded.first_seen ELSE sending_ips.first_seen END, \
                     helo = CASE WHEN excluded.last_seen >= sending_ips.last_seen THEN COALESCE(excluded.helo, sending_ips.helo) ELSE sending_ips.helo END, \
                     last_seen = CASE WHEN excluded.last_seen > sending_ips.last_seen THEN excluded.last_seen ELSE sending_ips.last_seen END",
                )
                .bind(*ip)
                .bind(*first)
                .bind(*last)
                .bind(*helo)
                .execute(&mut *self.tx)
                .await?;
            }
            Ok(())
        }

        async fn due_incidents(&mut self, now_ms: i64) -> $crate::store::Result<Vec<$crate::incidents::Incident>> {
            let rows: Vec<$crate::store::rows::IncidentRow> = sqlx::query_as($crate::store::rows::DUE_INCIDENTS)
                .bind(now_ms)
                .fetch_all(&mut *self.tx)
                .await?;
            rows.into_iter().map(|r| r.into_incident()).collect()
        }

        async fn incident_for_update(&mut self, id: i64) -> $crate::store::Result<Option<$crate::incidents::Incident>> {
            let row: Option<$crate::store::rows::IncidentRow> = sqlx::query_as($crate::store::rows::INCIDENT_BY_ID)
                .bind(id)
                .fetch_optional(&mut *self.tx)
                .await?;
            row.map(|r| r.into_incident()).transpose()
        }

        async fn classification_page(
            &mut self,
            after: i64,
            limit: i64,
        ) -> $crate::store::Result<Vec<$crate::store::commit::ClassRow>> {
            Ok(sqlx::query_as(
                "SELECT id, type, incident_id, response, code, enhanced, stage, mx_host, cause, \
                 classification FROM events WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await?)
        }

        async fn set_classification(
            &mut self,
            id: i64,
            cause: &str,
            action: &str,
            json: &str,
        ) -> $crate::store::Result<()> {
            sqlx::query("UPDATE events SET cause = $1, action = $2, classification = $3 WHERE id = $4")
                .bind(cause)
                .bind(action)
                .bind(json)
                .bind(id)
                .execute(&mut *self.tx)
                .await?;
            Ok(())
        }

        async fn commit(self) -> $crate::store::Result<()> {
            self.tx.commit().await?;
            Ok(())
        }
        }
    };
}

pub(crate) use impl_store;
pub(crate) use impl_write_tx;
