// Pruning segments by ts through livetrack.pings (issue 28).
//
// In the view, a segment's fixes come out of livetrack._segment_fixes(data),
// and the planner cannot know that every fix's ts lies within the segment's
// [t_min, t_max], nor that t_min lies in [period, period + 1 minute). So a
// query's `ts >= X` would decode every segment there is. Before planning,
// this hook finds each reference to the view and, for every top-level WHERE
// condition `ts OP E` on it (E free of the query's columns and not volatile:
// a constant, a parameter, now() - interval '1 hour'), adds what it implies
// to the view's segment branch: conditions on t_min/t_max, which the rows
// must meet, and on period, which prune the daily partitions and drive the
// BRIN on period. driver_id needs no help: the branch's driver_id is the
// segment's own column, so `driver_id = 42` becomes an index condition.
//
// Only implied conditions are added (a row they remove would have failed the
// query's own condition), so results never change; EXPLAIN shows them.
//
// The hot log's minutes have no statistics (autovacuum is off for them, and
// they live a minute or two), and without a correlation figure the planner
// prices their BRIN on driver_id as useless and reads a whole minute for
// one driver. The data is far better than that: every batch is written in
// driver order, so each page holds a narrow band of drivers. A statistics
// hook therefore describes driver_id in a hot partition as it is: ordered
// within its pages (correlation 1 for the BRIN's purposes), about a hundred
// rows a driver.
#include "pg.hpp"
#include "shared.hpp"

extern "C" {
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_statistic.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/rel.h"
#include "utils/selfuncs.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_proc.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "optimizer/planner.h"
#include "parser/parsetree.h"
#include "parser/parse_oper.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
}

namespace {

planner_hook_type prev_planner;
get_relation_stats_hook_type prev_stats;

Node *copy_node(Node *n) { return static_cast<Node *>(copyObjectImpl(n)); }

// The tree walkers take a walker of Postgres's old-style function type.
typedef bool (*Walker)();
template <typename F> Walker as_walker(F *f) { return reinterpret_cast<Walker>(reinterpret_cast<void (*)()>(f)); }

struct Ids {
	bool known, valid; // looked up since the last relcache invalidation; found
	Oid segments, tstz_family;
	AttrNumber period, t_min, t_max;
	Oid ns;                // livetrack
	AttrNumber hot_driver; // livetrack.hot's driver_id
} ids_cache;

// Any relcache invalidation (DDL anywhere) makes us look again: cheap, and
// DROP/CREATE EXTENSION is one.
void forget_ids(Datum, Oid) { ids_cache.known = false; }

bool lookup(Ids &ids) {
	if (ids.known)
		return ids.valid;
	ids.known = true;
	ids.valid = false;
	Oid ns = get_namespace_oid("livetrack", true);
	if (!OidIsValid(ns))
		return false;
	ids.ns = ns;
	Oid hot = get_relname_relid("hot", ns);
	ids.hot_driver = OidIsValid(hot) ? get_attnum(hot, "driver_id") : InvalidAttrNumber;
	ids.segments = get_relname_relid("segments", ns);
	if (!OidIsValid(ids.segments))
		return false;
	ids.period = get_attnum(ids.segments, "period");
	ids.t_min = get_attnum(ids.segments, "t_min");
	ids.t_max = get_attnum(ids.segments, "t_max");
	// The btree family of timestamptz (datetime_ops), for the operators we add.
	Oid lt_op = OpernameGetOprid(list_make1(makeString(pstrdup("<"))), TIMESTAMPTZOID, TIMESTAMPTZOID);
	List *interp = OidIsValid(lt_op) ? get_op_btree_interpretation(lt_op) : NIL;
	ids.tstz_family = interp ? static_cast<OpBtreeInterpretation *>(linitial(interp))->opfamily_id : InvalidOid;
	ids.valid = ids.period != InvalidAttrNumber && ids.t_min != InvalidAttrNumber && ids.t_max != InvalidAttrNumber &&
	            OidIsValid(ids.tstz_family);
	return ids.valid;
}

// Only queries that read a view or a subquery can reach the pings view.
bool may_read_view(Query *q) {
	if (q->cteList != NIL || q->hasSubLinks)
		return true;
	ListCell *lc;
	foreach (lc, q->rtable)
		if (static_cast<RangeTblEntry *>(lfirst(lc))->rtekind == RTE_SUBQUERY)
			return true;
	return false;
}

// Whether e can be evaluated once, outside the query: no column of any
// level, no aggregate or subquery, nothing volatile.
bool free_walker(Node *node, void *) {
	if (node == NULL)
		return false;
	if (IsA(node, Var) || IsA(node, PlaceHolderVar) || IsA(node, Aggref) || IsA(node, WindowFunc) ||
	    IsA(node, GroupingFunc) || IsA(node, SubLink) || IsA(node, CurrentOfExpr))
		return true;
	if (IsA(node, Param) && reinterpret_cast<Param *>(node)->paramkind != PARAM_EXTERN)
		return true;
	return expression_tree_walker(node, as_walker(free_walker), NULL);
}
bool pseudo_constant(Node *e) { return !free_walker(e, NULL) && !contain_volatile_functions(e); }

// The view's segment branch: the leaf of its UNION ALL that reads segments
// through _segment_fixes, and which column of the view is ts.
struct Branch {
	Query *q;
	Index seg_rti;
	AttrNumber ts_col; // in the view's output
};

bool is_decode_call(RangeTblEntry *rte) {
	if (rte->rtekind != RTE_FUNCTION || list_length(rte->functions) != 1)
		return false;
	auto *rf = static_cast<RangeTblFunction *>(linitial(rte->functions));
	if (!IsA(rf->funcexpr, FuncExpr))
		return false;
	Oid fn = reinterpret_cast<FuncExpr *>(rf->funcexpr)->funcid;
	char *name = get_func_name(fn);
	return name != NULL && strcmp(name, "_segment_fixes") == 0 &&
	       get_func_namespace(fn) == get_namespace_oid("livetrack", true);
}

bool find_branch(Query *view, const Ids &ids, Branch &b) {
	if (view == NULL || view->setOperations == NULL)
		return false;
	AttrNumber ts_col = InvalidAttrNumber;
	ListCell *lc;
	foreach (lc, view->targetList) {
		auto *te = static_cast<TargetEntry *>(lfirst(lc));
		if (!te->resjunk && te->resname && strcmp(te->resname, "ts") == 0)
			ts_col = te->resno;
	}
	if (ts_col == InvalidAttrNumber)
		return false;
	foreach (lc, view->rtable) {
		auto *rte = static_cast<RangeTblEntry *>(lfirst(lc));
		if (rte->rtekind != RTE_SUBQUERY || rte->subquery == NULL)
			continue;
		Query *leaf = rte->subquery;
		Index seg = 0, fn = 0, i = 0;
		ListCell *lc2;
		foreach (lc2, leaf->rtable) {
			auto *r = static_cast<RangeTblEntry *>(lfirst(lc2));
			i++;
			if (r->rtekind == RTE_RELATION && r->relid == ids.segments)
				seg = i;
			else if (is_decode_call(r))
				fn = i;
		}
		if (seg == 0 || fn == 0)
			continue;
		// Its ts must be the decoded fix's ts (the function's first column).
		TargetEntry *te = get_tle_by_resno(leaf->targetList, ts_col);
		if (te == NULL || !IsA(te->expr, Var))
			continue;
		auto *v = reinterpret_cast<Var *>(te->expr);
		if (v->varno != int(fn) || v->varattno != 1 || v->varlevelsup != 0)
			continue;
		b = Branch{leaf, seg, ts_col};
		return true;
	}
	return false;
}

Node *segment_var(const Branch &b, AttrNumber att) {
	return reinterpret_cast<Node *>(makeVar(b.seg_rti, att, TIMESTAMPTZOID, -1, InvalidOid, 0));
}

void add_qual(Branch &b, Oid opno, Node *left, Node *right) {
	Expr *clause = make_opclause(opno, BOOLOID, false, reinterpret_cast<Expr *>(left),
	                             reinterpret_cast<Expr *>(right), InvalidOid, InvalidOid);
	set_opfuncid(reinterpret_cast<OpExpr *>(clause));
	b.q->jointree->quals = make_and_qual(b.q->jointree->quals, reinterpret_cast<Node *>(clause));
}

// E - 1 minute, for E a timestamptz: the earliest period whose segment can
// hold a fix at E or later.
Node *minus_minute(Node *e) {
	Interval *iv = static_cast<Interval *>(palloc0(sizeof(Interval)));
	iv->time = 60 * USECS_PER_SEC;
	Const *c = makeConst(INTERVALOID, -1, InvalidOid, sizeof(Interval), PointerGetDatum(iv), false, false);
	return reinterpret_cast<Node *>(makeFuncExpr(F_TIMESTAMPTZ_MI_INTERVAL, TIMESTAMPTZOID,
	                                             list_make2(copy_node(e), c), InvalidOid, InvalidOid,
	                                             COERCE_EXPLICIT_CALL));
}

// One condition `ts OP e` (op a btree comparison of timestamptz with e's type).
void imply(Branch &b, const Ids &ids, Oid opno, Node *e) {
	List *interps = get_op_btree_interpretation(opno);
	ListCell *lc;
	foreach (lc, interps) {
		auto *in = static_cast<OpBtreeInterpretation *>(lfirst(lc));
		if (in->oplefttype != TIMESTAMPTZOID)
			continue;
		Oid rtype = in->oprighttype, fam = in->opfamily_id;
		Oid le = get_opfamily_member(fam, TIMESTAMPTZOID, rtype, BTLessEqualStrategyNumber);
		Oid ge = get_opfamily_member(fam, TIMESTAMPTZOID, rtype, BTGreaterEqualStrategyNumber);
		Oid gt_tt = get_opfamily_member(ids.tstz_family, TIMESTAMPTZOID, TIMESTAMPTZOID, BTGreaterStrategyNumber);
		bool tstz = exprType(e) == TIMESTAMPTZOID;
		switch (in->strategy) {
		case BTGreaterStrategyNumber:
		case BTGreaterEqualStrategyNumber:
			add_qual(b, opno, segment_var(b, ids.t_max), copy_node(e));
			if (tstz && OidIsValid(gt_tt))
				add_qual(b, gt_tt, segment_var(b, ids.period), minus_minute(e));
			return;
		case BTLessStrategyNumber:
		case BTLessEqualStrategyNumber:
			add_qual(b, opno, segment_var(b, ids.t_min), copy_node(e));
			add_qual(b, opno, segment_var(b, ids.period), copy_node(e));
			return;
		case BTEqualStrategyNumber:
			if (!OidIsValid(le) || !OidIsValid(ge))
				return;
			add_qual(b, le, segment_var(b, ids.t_min), copy_node(e));
			add_qual(b, ge, segment_var(b, ids.t_max), copy_node(e));
			add_qual(b, le, segment_var(b, ids.period), copy_node(e));
			if (tstz && OidIsValid(gt_tt))
				add_qual(b, gt_tt, segment_var(b, ids.period), minus_minute(e));
			return;
		}
	}
}

// The conjuncts of a WHERE clause, nested ANDs (BETWEEN) flattened.
List *conjuncts(Node *n, List *out) {
	if (n == NULL)
		return out;
	if (IsA(n, BoolExpr) && reinterpret_cast<BoolExpr *>(n)->boolop == AND_EXPR) {
		ListCell *lc;
		foreach (lc, reinterpret_cast<BoolExpr *>(n)->args)
			out = conjuncts(static_cast<Node *>(lfirst(lc)), out);
		return out;
	}
	return lappend(out, n);
}

void prune_query(Query *q, const Ids &ids) {
	if (q->jointree == NULL || q->jointree->quals == NULL)
		return;
	List *conds = conjuncts(q->jointree->quals, NIL);
	Index rti = 0;
	ListCell *lc;
	foreach (lc, q->rtable) {
		auto *rte = static_cast<RangeTblEntry *>(lfirst(lc));
		rti++;
		Branch b;
		if (rte->rtekind != RTE_SUBQUERY || !find_branch(rte->subquery, ids, b))
			continue;
		ListCell *c;
		foreach (c, conds) {
			auto *op = static_cast<OpExpr *>(lfirst(c));
			if (!IsA(op, OpExpr) || list_length(op->args) != 2)
				continue;
			Node *l = static_cast<Node *>(linitial(op->args)), *r = static_cast<Node *>(lsecond(op->args));
			auto is_ts = [&](Node *n) {
				if (!IsA(n, Var))
					return false;
				auto *v = reinterpret_cast<Var *>(n);
				return v->varno == int(rti) && v->varattno == b.ts_col && v->varlevelsup == 0;
			};
			if (is_ts(l) && pseudo_constant(r))
				imply(b, ids, op->opno, r);
			else if (is_ts(r) && pseudo_constant(l)) {
				Oid com = get_commutator(op->opno);
				if (OidIsValid(com))
					imply(b, ids, com, l);
			}
		}
	}
}

bool walker(Node *node, void *ctx) {
	if (node == NULL)
		return false;
	if (IsA(node, Query)) {
		auto *q = reinterpret_cast<Query *>(node);
		bool r = query_tree_walker(q, as_walker(walker), ctx, 0);
		prune_query(q, *static_cast<Ids *>(ctx));
		return r;
	}
	return expression_tree_walker(node, as_walker(walker), ctx);
}

PlannedStmt *history_planner(Query *parse, const char *query_string, int cursor_options, ParamListInfo params) {
	if (parse->commandType != CMD_UTILITY && may_read_view(parse) && lookup(ids_cache))
		(void)walker(reinterpret_cast<Node *>(parse), &ids_cache);
	return prev_planner ? prev_planner(parse, query_string, cursor_options, params)
	                    : standard_planner(parse, query_string, cursor_options, params);
}

// A minute of the hot log: livetrack.hot_YYYYMMDD_HHMI, a partition.
bool is_hot_minute(Oid relid, const Ids &ids) {
	if (!get_rel_relispartition(relid) || get_rel_namespace(relid) != ids.ns)
		return false;
	char *name = get_rel_name(relid);
	return name != NULL && strncmp(name, "hot_", 4) == 0 && strcmp(name, "hot_late") != 0;
}

bool hot_stats(PlannerInfo *root, RangeTblEntry *rte, AttrNumber attnum, VariableStatData *vardata) {
	if (prev_stats && prev_stats(root, rte, attnum, vardata))
		return true;
	if (rte->rtekind != RTE_RELATION || rte->inh || !lookup(ids_cache) || attnum != ids_cache.hot_driver ||
	    !is_hot_minute(rte->relid, ids_cache))
		return false;
	Relation sd = table_open(StatisticRelationId, AccessShareLock);
	Datum values[Natts_pg_statistic];
	bool nulls[Natts_pg_statistic];
	for (int i = 0; i < Natts_pg_statistic; i++) {
		values[i] = (Datum)0;
		nulls[i] = false;
	}
	values[Anum_pg_statistic_starelid - 1] = ObjectIdGetDatum(rte->relid);
	values[Anum_pg_statistic_staattnum - 1] = Int16GetDatum(attnum);
	values[Anum_pg_statistic_stainherit - 1] = BoolGetDatum(false);
	values[Anum_pg_statistic_stanullfrac - 1] = Float4GetDatum(0);
	values[Anum_pg_statistic_stawidth - 1] = Int32GetDatum(8);
	values[Anum_pg_statistic_stadistinct - 1] = Float4GetDatum(-0.01f); // a driver per hundred rows
	for (int k = 0; k < STATISTIC_NUM_SLOTS; k++) {
		values[Anum_pg_statistic_stakind1 - 1 + k] = Int16GetDatum(0);
		values[Anum_pg_statistic_staop1 - 1 + k] = ObjectIdGetDatum(InvalidOid);
		values[Anum_pg_statistic_stacoll1 - 1 + k] = ObjectIdGetDatum(InvalidOid);
		nulls[Anum_pg_statistic_stanumbers1 - 1 + k] = true;
		nulls[Anum_pg_statistic_stavalues1 - 1 + k] = true;
	}
	Datum one = Float4GetDatum(1.0f);
	values[Anum_pg_statistic_stakind1 - 1] = Int16GetDatum(STATISTIC_KIND_CORRELATION);
	values[Anum_pg_statistic_staop1 - 1] = ObjectIdGetDatum(Int8LessOperator);
	values[Anum_pg_statistic_stanumbers1 - 1] = PointerGetDatum(construct_array(&one, 1, FLOAT4OID, 4, true, TYPALIGN_INT));
	nulls[Anum_pg_statistic_stanumbers1 - 1] = false;
	vardata->statsTuple = heap_form_tuple(RelationGetDescr(sd), values, nulls);
	vardata->freefunc = heap_freetuple;
	table_close(sd, AccessShareLock);
	return true;
}

} // namespace

void lt_history_planner_init(void) {
	CacheRegisterRelcacheCallback(forget_ids, (Datum)0);
	prev_planner = planner_hook;
	planner_hook = history_planner;
	prev_stats = get_relation_stats_hook;
	get_relation_stats_hook = hot_stats;
}
