//! One claimed batch, start to end: coalesce, read the current documents, plan, write through
//! the executor (checking before every write that the claims are still this worker's), record.
//! With further live indexes (see `lanes`) the plan and the writes are carried out once per
//! index, side by side; an entry's outcome combines them (done only when every index
//! acknowledged it). An entry written for some indexes only (an index build's) is carried
//! out in those lanes only; one no live index needs any more is done as `unchanged`. While an
//! index is being built, a live entry is written to it too, unless its build has not read the
//! document yet (it will write it as it is then: see `tidemark_core::build_cursor`), and the
//! batch is recorded in two parts that do not wait for each other (what the readable indexes
//! carry out, what only building indexes need); a live entry whose part for a building index
//! fails or lags is done when the readable indexes have it, that part handed on (see
//! `handoff`).

use crate::execute::{settle, Executor, Outcomes};
use crate::handoff::{self, LaneKind};
use crate::lease::Claims;
use crate::plan::{self, Documents, Failure, Outcome, Shape, Target};
use crate::record::{EntryInfo, Recorder};
use crate::report::BatchReport;
use crate::WorkerError;
use bson::{doc, oid::ObjectId, Document};
use futures::TryStreamExt;
use mongodb::Database;
use std::collections::{HashMap, HashSet};
use tidemark_core::build_cursor::BuildCursor;
use tidemark_core::{OutboxEntry, OutboxResult, COLL_DOCUMENTS};

/// One index to write in a batch: its definition's name, its executor and its shape.
#[derive(Clone, Copy)]
pub(crate) struct LaneRef<'a> {
    pub name: &'a str,
    pub exec: &'a Executor,
    pub shape: &'a Shape,
    /// The index is being built: a live entry hands its part for it on when that part fails
    /// or lags (see `handoff`).
    pub building: bool,
    /// Where its build stands, read after the claim: changes the build will read by itself
    /// are not written here by the live path.
    pub cursor: Option<BuildCursor>,
}

impl<'a> LaneRef<'a> {
    /// The lane as the hand-off sees it (which entries it needs).
    pub fn kind(&self) -> LaneKind<'a> {
        LaneKind {
            name: self.name,
            building: self.building,
            cursor: self.cursor,
        }
    }
}

/// What processing a batch needs.
pub(crate) struct BatchCtx<'a> {
    pub db: &'a Database,
    /// The indexes to write: the active one first, then the other live ones.
    pub lanes: Vec<LaneRef<'a>>,
    /// Live writes queue up behind this worker (see `claim::live_behind`): their parts for
    /// building indexes are handed on without being written here.
    pub behind: bool,
    pub recorder: Recorder<'a>,
}

/// The current documents of `ids`, in one query.
async fn read_documents(db: &Database, ids: &[ObjectId]) -> Result<Documents, WorkerError> {
    let mut docs = Documents::new();
    if ids.is_empty() {
        return Ok(docs);
    }
    let raw: Vec<Document> = db
        .collection::<Document>(COLL_DOCUMENTS)
        .find(doc! {"_id": {"$in": ids}})
        .await?
        .try_collect()
        .await?;
    for d in raw {
        if let Ok(id) = d.get_object_id("_id") {
            let parsed = bson::from_document(d).map_err(|e| format!("invalid document: {e}"));
            docs.insert(id, parsed);
        }
    }
    Ok(docs)
}

/// Hands `entries` back: the claims were lost before a write.
fn release_all(out: &mut Outcomes, entries: impl IntoIterator<Item = ObjectId>) {
    for e in entries {
        settle(out, e, Outcome::Release);
    }
}

impl BatchCtx<'_> {
    /// Processes one claimed batch and records every entry's outcome, in two parts that do
    /// not wait for each other: the entries the readable indexes carry out (an application's
    /// writes, written to the building indexes too), and those only building indexes need (a
    /// build's). So a live entry is done when every index has it, or when the readable ones
    /// have it and its part for a building index is handed on (see [`Self::write_live`]),
    /// however slow the build's upserts in the same batch are.
    pub async fn process(
        &self,
        entries: Vec<OutboxEntry>,
        claims: &Claims<'_>,
    ) -> Result<BatchReport, WorkerError> {
        let mut info = EntryInfo::of(&entries);
        let (primary, settled) = plan::coalesce(entries);
        let mut out: Outcomes = settled.into_iter().collect();
        let primary = self.needed(primary, &mut info, &mut out);
        let kinds: Vec<LaneKind> = self.lanes.iter().map(LaneRef::kind).collect();
        let ids: Vec<ObjectId> = primary.iter().map(|e| e.document_id).collect();
        let docs = read_documents(self.db, &ids).await?;
        let (reads, builds): (Vec<OutboxEntry>, Vec<OutboxEntry>) = primary
            .into_iter()
            .partition(|e| kinds.iter().any(|l| !l.building && l.needs(e)));
        self.count_left_to_build(&reads, &kinds);
        let readable = async {
            let (o, next) = self.write_live(&reads, &kinds, &docs, claims).await;
            for (e, o) in o {
                settle(&mut out, e, o);
            }
            self.recorder.record(out, &info, next).await
        };
        let building = async {
            if builds.is_empty() {
                return Ok(BatchReport::default());
            }
            let o = self.write_lanes(&builds, true, &docs, claims).await;
            self.recorder.record(o, &info, Vec::new()).await
        };
        let (r, b) = futures::join!(readable, building);
        let mut report = r?;
        report.add(&b?);
        Ok(report)
    }

    /// Writes the entries some readable index carries out to every index, readable and
    /// building side by side. Their outcomes are the readable indexes'; an entry done there
    /// whose building part failed, or had not finished [`handoff::HANDOFF_AFTER`] after the
    /// readable part, is handed on: the entries returned carry that part to the building
    /// indexes (the unfinished writes are dropped; the new entry repeats them). A batch
    /// claimed while live writes queue up (`behind`) hands every such part on unwritten.
    async fn write_live(
        &self,
        reads: &[OutboxEntry],
        kinds: &[LaneKind<'_>],
        docs: &Documents,
        claims: &Claims<'_>,
    ) -> (Outcomes, Vec<OutboxEntry>) {
        let handed = handoff::handoffs(reads, kinds);
        if handed.is_empty() {
            // No building index needs these entries.
            return (
                self.write_lanes(reads, false, docs, claims).await,
                Vec::new(),
            );
        }
        let (out, built) = if self.behind {
            (self.write_lanes(reads, false, docs, claims).await, None)
        } else {
            self.write_both(reads, docs, claims).await
        };
        let next = reads
            .iter()
            .filter_map(|e| {
                let building = built.as_ref().map(|b| b.get(&e.id));
                let on = handoff::hands_on(out.get(&e.id), building);
                on.then(|| handed.get(&e.id))
                    .flatten()
                    .map(|i| handoff::entry_for(e, i.clone()))
            })
            .collect();
        (out, next)
    }

    /// Writes `reads` to the readable and the building lanes side by side; the building
    /// lanes' outcomes are None when they had not finished [`handoff::HANDOFF_AFTER`] after
    /// the readable ones.
    async fn write_both(
        &self,
        reads: &[OutboxEntry],
        docs: &Documents,
        claims: &Claims<'_>,
    ) -> (Outcomes, Option<Outcomes>) {
        let mut readable = std::pin::pin!(self.write_lanes(reads, false, docs, claims));
        let mut building = std::pin::pin!(self.write_lanes(reads, true, docs, claims));
        let mut built = None;
        let out = loop {
            tokio::select! {
                out = &mut readable => break out,
                o = &mut building, if built.is_none() => built = Some(o),
            }
        };
        let built = match built {
            Some(o) => Some(o),
            None => tokio::time::timeout(handoff::HANDOFF_AFTER, building)
                .await
                .ok(),
        };
        (out, built)
    }

    /// Writes `entries` to every lane that is (or is not) `building`, side by side; each
    /// lane's outcomes are its own, combined here (a failure in any index wins over success
    /// in another).
    async fn write_lanes(
        &self,
        entries: &[OutboxEntry],
        building: bool,
        docs: &Documents,
        claims: &Claims<'_>,
    ) -> Outcomes {
        let lanes = self.lanes.iter().filter(|l| l.building == building);
        let lanes = lanes.map(|&lane| {
            let mine: Vec<OutboxEntry> = entries
                .iter()
                .filter(|e| lane.kind().needs(e))
                .cloned()
                .collect();
            let docs = docs.clone();
            async move {
                let mut lane_out = Outcomes::new();
                if !mine.is_empty() {
                    let (exec, shape) = (lane.exec, lane.shape);
                    Self::lane(exec, shape, building, mine, docs, claims, &mut lane_out).await;
                }
                lane_out
            }
        });
        let mut out = Outcomes::new();
        for lane_out in futures::future::join_all(lanes).await {
            for (e, o) in lane_out {
                settle(&mut out, e, o);
            }
        }
        out
    }

    /// Counts the live entries a building lane leaves to its build.
    fn count_left_to_build(&self, reads: &[OutboxEntry], kinds: &[LaneKind<'_>]) {
        for l in kinds.iter().filter(|l| l.building) {
            let n = reads
                .iter()
                .filter(|e| e.applies_to(l.name) && !l.needs(e))
                .count();
            if n > 0 {
                let c = &self.recorder.metrics.left_to_build_total;
                c.with_label_values(&[l.name]).inc_by(n as u64);
            }
        }
    }

    /// The primary entries some lane needs; the others are done: `superseded` when they are
    /// left to a build (it will write the document as it is then), `unchanged` when the index
    /// they were written for is gone. Notes which entries the active index carries out.
    fn needed(
        &self,
        primary: Vec<OutboxEntry>,
        info: &mut HashMap<ObjectId, EntryInfo>,
        out: &mut Outcomes,
    ) -> Vec<OutboxEntry> {
        let active = self.lanes.first().map(|l| l.name).unwrap_or_default();
        let mut needed = Vec::with_capacity(primary.len());
        for e in primary {
            if let Some(i) = info.get_mut(&e.id) {
                i.active = e.applies_to(active);
            }
            if self.lanes.iter().any(|l| l.kind().needs(&e)) {
                needed.push(e);
            } else if self.lanes.iter().any(|l| e.applies_to(l.name)) {
                settle(out, e.id, Outcome::Done(OutboxResult::Superseded));
            } else {
                settle(out, e.id, Outcome::Done(OutboxResult::Unchanged));
            }
        }
        needed
    }

    /// Plans and writes one index. The upserts of an application's writes go before a build's
    /// in a readable index only: nobody searches a `building` one yet, so there a live write's
    /// part waits, like the build's own, while a readable index's upsert waits, and is handed
    /// on when it lags (see [`Self::write_live`]).
    async fn lane(
        exec: &Executor,
        shape: &Shape,
        building: bool,
        primary: Vec<OutboxEntry>,
        docs: Documents,
        claims: &Claims<'_>,
        out: &mut Outcomes,
    ) {
        let live = match building {
            true => HashSet::new(),
            false => plan::live_entries(&primary),
        };
        let decided = plan::decide(primary, docs, shape);
        for (e, o) in decided.outcomes {
            settle(out, e, o);
        }
        let (deletes, targets) = (decided.deletes, decided.targets);
        if (!deletes.is_empty() || !targets.is_empty()) && !claims.still_ours().await {
            release_all(out, deletes.iter().map(|d| d.entry));
            release_all(out, targets.iter().map(|t| t.entry));
            return;
        }
        if !deletes.is_empty() {
            exec.delete(&deletes, out).await;
        }
        if !targets.is_empty() {
            Self::index(exec, shape, targets, &live, claims, out).await;
        }
    }

    /// Skips current vectors, updates metadata where only it changed, embeds and upserts the
    /// rest (a group with a `live` entry before any build upsert). Settles every target.
    async fn index(
        exec: &Executor,
        shape: &Shape,
        targets: Vec<Target>,
        live: &HashSet<ObjectId>,
        claims: &Claims<'_>,
        out: &mut Outcomes,
    ) {
        // Documents their entry says were just created have nothing stored to compare with.
        let ids: Vec<(ObjectId, String)> = targets
            .iter()
            .filter(|t| !t.new_document)
            .flat_map(|t| t.pieces.iter().map(|p| (t.document_id, p.id.clone())))
            .collect();
        let new = targets.iter().filter(|t| t.new_document).count();
        exec.count_reads(targets.len() - new, new);
        let stored = match exec.stored(&ids, shape.chunked()).await {
            Ok(s) => s,
            Err(e) => {
                let f = Outcome::Failed(Failure::index("chroma_read", &e));
                for t in &targets {
                    settle(out, t.entry, f.clone());
                }
                return;
            }
        };
        let w = plan::compare(targets, &stored, &shape.model);
        for (e, o) in w.outcomes {
            settle(out, e, o);
        }
        for e in &w.writing {
            settle(out, *e, Outcome::Done(OutboxResult::Indexed));
        }
        if !w.updates.is_empty() || !w.removals.is_empty() {
            if claims.still_ours().await {
                if !w.updates.is_empty() {
                    exec.update(w.updates, out).await;
                }
                if !w.removals.is_empty() {
                    exec.remove(&w.removals, out).await;
                }
            } else {
                release_all(out, w.updates.iter().map(|(e, _)| *e));
                release_all(out, w.removals.iter().map(|(e, _)| *e));
            }
        }
        if w.embeds.is_empty() {
            return;
        }
        // Long documents make many chunks: embed and write them in bounded groups.
        let mut groups = plan::groups(w.embeds, plan::GROUP_BYTES, plan::GROUP_TEXTS).into_iter();
        while let Some(group) = groups.next() {
            let ready = exec.embed(group, out).await;
            if ready.is_empty() {
                continue;
            }
            // Embedding can be slow: write only if the claims are still ours.
            if !claims.still_ours().await {
                release_all(out, ready.iter().map(|e| e.entry));
                release_all(out, groups.flatten().map(|e| e.entry));
                return;
            }
            let urgent = ready.iter().any(|e| live.contains(&e.entry));
            exec.upsert(ready, urgent, out).await;
        }
    }
}
