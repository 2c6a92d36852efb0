// A custom scan node for plain queries of livetrack.nearest_drivers().
//
// Run as a function scan, a ten-row search costs less than the scan around it:
// every execution rebuilds the RETURNS TABLE row type from pg_proc, sets up a
// set-returning call, builds all six columns of every row into a tuplestore
// and reads them back. When the call's arguments depend on no other table in
// the query, the planner is also offered this node. It checks the same
// arguments, runs the same search (spatial_sql.cpp), and hands each row
// straight to its parent, building only the columns the query reads.
//
// livetrack.enable_nearest_scan = off leaves every query to the function
// scan; the results are the same.
#include "spatial_sql.hpp"

extern "C" {
#include "catalog/objectaccess.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "parser/parsetree.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"
}

bool lt_enable_nearest_scan = true;

namespace {

constexpr const char *kName = "livetrack nearest";

struct NearestScanState {
	CustomScanState css; // first: the executor only knows this part
	// The arguments: a constant's value (the planner has folded most of
	// them, defaults included), or the state that computes it per search.
	NullableDatum arg_value[kNearestArgs];
	ExprState *arg_state[kNearestArgs];
	int natts;           // columns of the scan tuple,
	int16 attno[kNearestCols]; // each a column of nearest_drivers()
	LtNearestRows rows;
	uint32 nrows, next;
	bool searched;
};

set_rel_pathlist_hook_type prev_set_rel_pathlist;

// What lt_nearest_column() builds for each column (1..6).
const Oid kColumnTypes[kNearestCols + 1] = {InvalidOid, INT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, TIMESTAMPTZOID, TEXTOID};

bool text_is(Datum d, const char *s) {
	text *t = DatumGetTextPP(d);
	size_t n = strlen(s);
	return VARSIZE_ANY_EXHDR(t) == n && memcmp(VARDATA_ANY(t), s, n) == 0;
}

// Is fn our nearest_drivers()? Matched by its C symbol and library rather
// than its name, so nothing else that happens to be called so is taken over.
bool is_nearest_drivers(Oid fn) {
	if (fn < FirstNormalObjectId)
		return false;
	HeapTuple tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tp))
		return false;
	bool match = false;
	if (reinterpret_cast<Form_pg_proc>(GETSTRUCT(tp))->prolang == ClanguageId) {
		bool src_null, bin_null;
		Datum src = SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_prosrc, &src_null);
		Datum bin = SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_probin, &bin_null);
		if (!src_null && !bin_null && text_is(src, "livetrack_nearest_drivers")) {
			const char *path = TextDatumGetCString(bin);
			const char *base = strrchr(path, '/');
			match = strcmp(base ? base + 1 : path, "livetrack") == 0;
		}
	}
	ReleaseSysCache(tp);
	return match;
}

// Notes in seen[attno] the columns of the function's result that expr reads.
// False if it reads anything else (a whole-row or system column, a
// placeholder), or a column of another type than the scan builds (the
// symbol declared with another result): such queries are left to the
// function scan.
bool plain_columns(Node *expr, Index relid, Var **seen) {
	List *vars = pull_var_clause(expr, PVC_INCLUDE_PLACEHOLDERS);
	bool ok = true;
	ListCell *lc;
	foreach (lc, vars) {
		Var *v = static_cast<Var *>(lfirst(lc));
		if (!IsA(v, Var) || v->varno != int(relid) || v->varlevelsup != 0 || v->varattno < 1 ||
		    v->varattno > kNearestCols || v->vartype != kColumnTypes[v->varattno]) {
			ok = false;
			break;
		}
		if (seen[v->varattno] == NULL)
			seen[v->varattno] = v;
	}
	list_free(vars);
	return ok;
}

Plan *plan_nearest_scan(PlannerInfo *root, RelOptInfo *rel, CustomPath *best_path, List *tlist, List *clauses,
                        List *custom_plans);
Node *create_nearest_scan_state(CustomScan *cscan);
void begin_nearest_scan(CustomScanState *node, EState *estate, int eflags);
TupleTableSlot *exec_nearest_scan(CustomScanState *node);
void end_nearest_scan(CustomScanState *node);
void rescan_nearest_scan(CustomScanState *node);
void explain_nearest_scan(CustomScanState *node, List *ancestors, ExplainState *es);

const CustomPathMethods path_methods = {kName, plan_nearest_scan, NULL};
const CustomScanMethods scan_methods = {kName, create_nearest_scan_state};
const CustomExecMethods exec_methods = {kName, begin_nearest_scan, exec_nearest_scan, end_nearest_scan,
                                        rescan_nearest_scan, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                        explain_nearest_scan};

// set_rel_pathlist_hook: offers the node for a nearest_drivers() call in FROM
// whose arguments are constants, parameters or expressions of them.
void offer_nearest_scan(PlannerInfo *root, RelOptInfo *rel, Index rti, RangeTblEntry *rte) {
	if (prev_set_rel_pathlist)
		prev_set_rel_pathlist(root, rel, rti, rte);
	if (!lt_enable_nearest_scan || rte->rtekind != RTE_FUNCTION || rte->funcordinality ||
	    list_length(rte->functions) != 1 || rel->reloptkind != RELOPT_BASEREL || IS_DUMMY_REL(rel) ||
	    !bms_is_empty(rel->lateral_relids))
		return;
	Node *call = linitial_node(RangeTblFunction, rte->functions)->funcexpr;
	if (!IsA(call, FuncExpr) || list_length(reinterpret_cast<FuncExpr *>(call)->args) != kNearestArgs ||
	    !is_nearest_drivers(reinterpret_cast<FuncExpr *>(call)->funcid))
		return;
	Var *seen[kNearestCols + 1] = {NULL};
	if (!plain_columns(reinterpret_cast<Node *>(rel->reltarget->exprs), rti, seen))
		return;
	ListCell *lc;
	foreach (lc, rel->baserestrictinfo)
		if (!plain_columns(reinterpret_cast<Node *>(lfirst_node(RestrictInfo, lc)->clause), rti, seen))
			return;

	CustomPath *p = makeNode(CustomPath);
	p->path.pathtype = T_CustomScan;
	p->path.parent = rel;
	p->path.pathtarget = rel->reltarget;
	p->path.rows = rel->rows;
	// The function scan's cost without the call and the tuplestore: the
	// quals, and half a tuple's cost per row for handing it on.
	p->path.startup_cost = rel->baserestrictcost.startup;
	p->path.total_cost = p->path.startup_cost + rel->rows * (cpu_tuple_cost / 2 + rel->baserestrictcost.per_tuple);
	p->methods = &path_methods;
	add_path(rel, &p->path);
}

Plan *plan_nearest_scan(PlannerInfo *root, RelOptInfo *rel, CustomPath *, List *tlist, List *clauses, List *) {
	RangeTblEntry *rte = planner_rt_fetch(rel->relid, root);
	auto *call = reinterpret_cast<FuncExpr *>(linitial_node(RangeTblFunction, rte->functions)->funcexpr);
	List *quals = extract_actual_clauses(clauses, false);
	Var *seen[kNearestCols + 1] = {NULL};
	plain_columns(reinterpret_cast<Node *>(tlist), rel->relid, seen);
	plain_columns(reinterpret_cast<Node *>(quals), rel->relid, seen);

	CustomScan *cs = makeNode(CustomScan);
	// The scan tuple holds the columns read, in the function's order. When the
	// query reads just those, the executor needs no projection at all.
	for (int attno = 1; attno <= kNearestCols; attno++)
		if (seen[attno])
			cs->custom_scan_tlist =
			    lappend(cs->custom_scan_tlist, makeTargetEntry(static_cast<Expr *>(copyObjectImpl(seen[attno])),
			                                                   list_length(cs->custom_scan_tlist) + 1, NULL, false));
	cs->scan.plan.targetlist = tlist;
	cs->scan.plan.qual = quals;
	cs->scan.scanrelid = 0; // no relation to open: the scan tuple is described above
	cs->custom_exprs = static_cast<List *>(copyObjectImpl(call->args));
	cs->custom_private = list_make1_oid(call->funcid);
	cs->methods = &scan_methods;
	// The plan no longer calls the function, so say that it depends on it:
	// dropping or replacing it must invalidate cached plans.
	record_plan_function_dependency(root, call->funcid);
	return &cs->scan.plan;
}

Node *create_nearest_scan_state(CustomScan *) {
	auto *st = static_cast<NearestScanState *>(palloc0(sizeof(NearestScanState)));
	NodeSetTag(st, T_CustomScanState);
	st->css.methods = &exec_methods;
	return reinterpret_cast<Node *>(st);
}

void begin_nearest_scan(CustomScanState *node, EState *estate, int) {
	auto *st = reinterpret_cast<NearestScanState *>(node);
	auto *cs = reinterpret_cast<CustomScan *>(node->ss.ps.plan);
	// What the function scan would check before calling the function.
	Oid fn = linitial_oid(cs->custom_private);
	AclResult acl = pg_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE);
	if (acl != ACLCHECK_OK)
		aclcheck_error(acl, OBJECT_FUNCTION, get_func_name(fn));
	InvokeFunctionExecuteHook(fn);

	Assert(list_length(cs->custom_exprs) == kNearestArgs);
	int i = 0;
	ListCell *lc;
	foreach (lc, cs->custom_exprs) {
		auto *e = static_cast<Expr *>(lfirst(lc));
		if (IsA(e, Const)) // no expression state to build for it every execution
			st->arg_value[i] = NullableDatum{castNode(Const, e)->constvalue, castNode(Const, e)->constisnull};
		else
			st->arg_state[i] = ExecInitExpr(e, &node->ss.ps);
		i++;
	}
	foreach (lc, cs->custom_scan_tlist)
		st->attno[st->natts++] = int16(castNode(Var, lfirst_node(TargetEntry, lc)->expr)->varattno);
	st->rows = LtNearestRows{estate->es_query_cxt, NULL, 0};
}

// ExecScan's access method: searches on the first call, then returns a row a call.
TupleTableSlot *next_nearest(ScanState *ss) {
	auto *st = reinterpret_cast<NearestScanState *>(ss);
	ExprContext *econtext = ss->ps.ps_ExprContext;
	if (!st->searched) {
		for (int i = 0; i < kNearestArgs; i++)
			if (st->arg_state[i])
				st->arg_value[i].value =
				    ExecEvalExprSwitchContext(st->arg_state[i], econtext, &st->arg_value[i].isnull);
		st->nrows = lt_nearest_search(lt_nearest_query(st->arg_value), &st->rows);
		st->next = 0;
		st->searched = true;
	}
	TupleTableSlot *slot = ss->ss_ScanTupleSlot;
	ExecClearTuple(slot);
	if (st->next == st->nrows)
		return slot;
	const lt::Neighbor &n = st->rows.rows[st->next++];
	// A status text lives as long as its row: ExecScan resets this per row.
	MemoryContext old = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
	for (int c = 0; c < st->natts; c++) {
		slot->tts_values[c] = lt_nearest_column(n, st->attno[c]);
		slot->tts_isnull[c] = false;
	}
	MemoryContextSwitchTo(old);
	return ExecStoreVirtualTuple(slot);
}

// Only reached in an EvalPlanQual recheck, which needs a whole-row column of
// this scan; the planner never offers the node for those queries.
bool recheck_nearest(ScanState *, TupleTableSlot *) { return true; }

TupleTableSlot *exec_nearest_scan(CustomScanState *node) { return ExecScan(&node->ss, next_nearest, recheck_nearest); }

void end_nearest_scan(CustomScanState *) {} // everything is in the query's memory

void rescan_nearest_scan(CustomScanState *node) {
	reinterpret_cast<NearestScanState *>(node)->searched = false; // parameters may have changed
	ExecScanReScan(&node->ss);
}

// EXPLAIN VERBOSE shows the call, as it does for a function scan.
void explain_nearest_scan(CustomScanState *node, List *ancestors, ExplainState *es) {
	if (!es->verbose)
		return;
	auto *cs = reinterpret_cast<CustomScan *>(node->ss.ps.plan);
	FuncExpr *call = makeFuncExpr(linitial_oid(cs->custom_private), RECORDOID, cs->custom_exprs, InvalidOid,
	                              InvalidOid, COERCE_EXPLICIT_CALL);
	List *context = set_deparse_context_plan(es->deparse_cxt, &cs->scan.plan, ancestors);
	ExplainPropertyText("Function Call", deparse_expression(reinterpret_cast<Node *>(call), context, false, false), es);
}

} // namespace

void lt_nearest_scan_init(void) {
	RegisterCustomScanMethods(&scan_methods);
	prev_set_rel_pathlist = set_rel_pathlist_hook;
	set_rel_pathlist_hook = offer_nearest_scan;
}
