//! Logical views (`CREATE VIEW`): a named query over tables, streams or
//! other views, kept in the catalog and planned again wherever it is used,
//! so it always reads the tables as they are now. If they changed under it
//! (other columns), using the view says so, naming it.
//!
//! A view over a stream is a named filter or projection of the stream, as
//! in RisingWave: a continuous query reads it as the stream ([`expand`] puts
//! the view's query in place of its name before the query is planned), and
//! an ad-hoc SELECT refuses it as it refuses the stream itself.
//!
//! What reads what ([`dependencies`], [`dependents`]) is worked out from the
//! stored definitions, so DROP of a table, stream or view that a view reads
//! is refused (2BP01) unless CASCADE.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, col};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::ast::{
    CreateView, Ident, ObjectName, Query, TableAlias, TableAliasColumnDef, TableFactor, VisitMut, VisitorMut,
    visit_relations,
};

use crate::catalog::{Catalog, RelationKind};
use crate::error::QueryError;
use crate::sql::{Parser, Statement, table_key};

/// How deep views may read views (a guard against a cycle slipping in).
const MAX_DEPTH: usize = 16;

/// A view as DataFusion sees it: planned from its SQL on every scan.
#[derive(Debug)]
pub struct LogicalView {
    name: String,
    /// The view's query.
    query: String,
    /// `CREATE VIEW v (a, b)`: the names given to its columns, or none.
    columns: Vec<String>,
    /// The columns the view had when it was created (or restored).
    schema: SchemaRef,
    /// The CREATE VIEW statement, as stored (information_schema.views, `\d+`).
    definition: String,
    /// Why the view could not be planned at start-up, if so: said when it is used.
    broken: Option<String>,
}

impl LogicalView {
    /// Plans `view` in `state` (its names resolved in `public`); the plan's
    /// columns are the view's.
    pub async fn new(state: &SessionState, name: &str, view: &CreateView) -> Result<LogicalView, QueryError> {
        let mut stored = view.clone();
        stored.or_replace = false;
        stored.if_not_exists = false;
        let mut logical = LogicalView {
            name: name.to_string(),
            query: view.query.to_string(),
            columns: view.columns.iter().map(|c| c.name.value.clone()).collect(),
            schema: Arc::new(Schema::empty()),
            definition: stored.to_string(),
            broken: None,
        };
        let plan = logical.plan(state).await?;
        logical.schema = Arc::new(plan.schema().as_arrow().clone());
        Ok(logical)
    }

    /// The view a stored definition describes; one that cannot be planned
    /// now (a table it reads is unreadable) is kept, and says why when used.
    pub async fn restore(state: &SessionState, name: &str, definition: &str) -> LogicalView {
        let parsed = match Parser::new().parse(definition).map(|mut v| v.pop()) {
            Ok(Some(Statement::CreateView(view))) => Ok(view),
            Ok(_) => Err(format!("the stored definition of '{name}' is not a CREATE VIEW")),
            Err(e) => Err(e.message()),
        };
        let failed = match parsed {
            Ok(view) => match LogicalView::new(state, name, &view).await {
                Ok(view) => return view,
                Err(e) => e.message(),
            },
            Err(reason) => reason,
        };
        tracing::warn!(view = name, "view not planned at start-up: {failed}");
        LogicalView {
            name: name.to_string(),
            query: String::new(),
            columns: Vec::new(),
            schema: Arc::new(Schema::empty()),
            definition: definition.to_string(),
            broken: Some(failed),
        }
    }

    /// The view's query as a plan with the view's column names.
    async fn plan(&self, state: &SessionState) -> Result<LogicalPlan, QueryError> {
        if let Some(reason) = &self.broken {
            return Err(QueryError::Internal(format!("view \"{}\" cannot be planned: {reason}", self.name)));
        }
        let plan = state.create_logical_plan(&self.query).await?;
        if self.columns.is_empty() {
            return Ok(plan);
        }
        let fields = plan.schema().columns();
        if fields.len() != self.columns.len() {
            return Err(QueryError::Syntax(format!(
                "view \"{}\" names {} columns but its query returns {}",
                self.name,
                self.columns.len(),
                fields.len()
            )));
        }
        let renamed: Vec<Expr> =
            fields.into_iter().zip(&self.columns).map(|(c, name)| Expr::Column(c).alias(name)).collect();
        Ok(LogicalPlanBuilder::from(plan).project(renamed)?.build()?)
    }
}

#[async_trait]
impl TableProvider for LogicalView {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_table_definition(&self) -> Option<&str> {
        Some(&self.definition)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let Some(state) = state.as_any().downcast_ref::<SessionState>() else {
            return Err(DataFusionError::Internal(format!("view \"{}\" read outside a session", self.name)));
        };
        let plan =
            self.plan(state).await.map_err(|e| DataFusionError::Plan(format!("view \"{}\": {}", self.name, e.message())))?;
        let now: Vec<_> = plan.schema().fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
        let then: Vec<_> = self.schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
        if now != then {
            let list = |cols: &[(String, datafusion::arrow::datatypes::DataType)]| {
                cols.iter().map(|(n, t)| format!("{n} {}", crate::types::sql_type_name(t))).collect::<Vec<_>>().join(", ")
            };
            return Err(DataFusionError::Plan(format!(
                "view \"{}\" no longer matches what it reads: it was created with columns ({}), its query now gives ({}); CREATE OR REPLACE VIEW it",
                self.name,
                list(&then),
                list(&now)
            )));
        }
        let mut builder = LogicalPlanBuilder::from(plan.clone());
        if let Some(projection) = projection {
            let columns = plan.schema().columns();
            builder = builder.project(projection.iter().map(|i| col(columns[*i].clone())))?;
        }
        if let Some(limit) = limit {
            builder = builder.limit(0, Some(limit))?;
        }
        state.create_physical_plan(&builder.build()?).await
    }
}

/// The relations `query` reads by name (tables, streams, views), as
/// catalog keys; the names of its own CTEs are not relations.
pub fn dependencies(query: &Query) -> BTreeSet<String> {
    let mut ctes = BTreeSet::new();
    collect_ctes(query, &mut ctes);
    let mut names = BTreeSet::new();
    let _ = visit_relations(query, |name: &ObjectName| {
        if let Ok(key) = table_key(name)
            && !ctes.contains(&key)
        {
            names.insert(key);
        }
        ControlFlow::<()>::Continue(())
    });
    names
}

fn collect_ctes(query: &Query, ctes: &mut BTreeSet<String>) {
    if let Some(with) = &query.with {
        for cte in &with.cte_tables {
            ctes.insert(cte.alias.name.value.to_lowercase());
            collect_ctes(&cte.query, ctes);
        }
    }
}

/// The views whose definitions read `name`.
pub fn dependents(catalog: &Catalog, name: &str) -> Result<Vec<String>, QueryError> {
    let parser = Parser::new();
    let mut found = Vec::new();
    for def in catalog.list()? {
        if def.kind != RelationKind::View || def.name == name {
            continue;
        }
        if let Ok(Some(Statement::CreateView(view))) = parser.parse(&def.definition).map(|mut v| v.pop())
            && dependencies(&view.query).contains(name)
        {
            found.push(def.name);
        }
    }
    Ok(found)
}

/// Refuses a DROP of `name` (a `what`) that views read, unless `cascade`,
/// in which case it drops them (and the views that read those) first.
pub async fn drop_dependents(catalog: &Catalog, what: &str, name: &str, cascade: bool) -> Result<(), QueryError> {
    let views = dependents(catalog, name)?;
    if views.is_empty() {
        return Ok(());
    }
    if !cascade {
        return Err(QueryError::DependentObjects(format!(
            "cannot drop {what} {name} because view {} depends on it; drop the view first, or add CASCADE to drop it too",
            views.join(", view ")
        )));
    }
    for view in views {
        Box::pin(drop_dependents(catalog, "view", &view, true)).await?;
        catalog.drop(&view).await?;
    }
    Ok(())
}

/// Whether `query` reads `name`, directly or through views (a view that
/// would read itself is refused at CREATE).
pub fn reads(catalog: &Catalog, query: &Query, name: &str) -> Result<bool, QueryError> {
    let parser = Parser::new();
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = dependencies(query).into_iter().collect();
    while let Some(next) = todo.pop() {
        if next == name {
            return Ok(true);
        }
        if !seen.insert(next.clone()) {
            continue;
        }
        if let Some(def) = catalog.get(&next)?
            && def.kind == RelationKind::View
            && let Ok(Some(Statement::CreateView(view))) = parser.parse(&def.definition).map(|mut v| v.pop())
        {
            todo.extend(dependencies(&view.query));
        }
    }
    Ok(false)
}

/// `query` with every view it reads replaced by the view's query (aliased
/// by the view's name, or by the alias the query gave it), through views
/// of views: what a continuous query plans, so that a view over a stream
/// reads the stream.
pub fn expand(query: &Query, catalog: &Catalog) -> Result<Query, QueryError> {
    let mut expanded = query.clone();
    for _ in 0..MAX_DEPTH {
        let mut expander = Expander { catalog, parser: Parser::new(), changed: false, error: None };
        let _ = expanded.visit(&mut expander);
        if let Some(e) = expander.error {
            return Err(e);
        }
        if !expander.changed {
            return Ok(expanded);
        }
    }
    Err(QueryError::TooComplex(format!("views read views more than {MAX_DEPTH} deep")))
}

struct Expander<'a> {
    catalog: &'a Catalog,
    parser: Parser,
    changed: bool,
    error: Option<QueryError>,
}

impl VisitorMut for Expander<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table { name, alias, args: None, .. } = factor else { return ControlFlow::Continue(()) };
        let Ok(key) = table_key(name) else { return ControlFlow::Continue(()) };
        let def = match self.catalog.get(&key) {
            Ok(Some(def)) if def.kind == RelationKind::View => def,
            Ok(_) => return ControlFlow::Continue(()),
            Err(e) => {
                self.error = Some(e.into());
                return ControlFlow::Break(());
            }
        };
        let view = match self.parser.parse(&def.definition).map(|mut v| v.pop()) {
            Ok(Some(Statement::CreateView(view))) => view,
            _ => {
                self.error = Some(QueryError::Internal(format!("the stored definition of view '{key}' does not parse")));
                return ControlFlow::Break(());
            }
        };
        let mut alias = alias.clone().unwrap_or_else(|| TableAlias {
            explicit: true,
            name: Ident::new(key.clone()),
            columns: Vec::new(),
            at: None,
        });
        if alias.columns.is_empty() {
            alias.columns = view.columns.iter().map(|c| TableAliasColumnDef::from_name(c.name.value.clone())).collect();
        }
        *factor = TableFactor::Derived { lateral: false, subquery: view.query.clone(), alias: Some(alias), sample: None };
        self.changed = true;
        ControlFlow::Continue(())
    }
}
