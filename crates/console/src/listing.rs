//! Tables that sort, filter and page on the server: the query string carries the
//! column, the direction, a filter text and the page, so every state is a link (and
//! works without JavaScript), and a page renders at most [`PER_PAGE`] rows however many
//! there are.

use serde::Deserialize;

/// Rows per page.
pub const PER_PAGE: usize = 50;

/// What a table's query string asks for.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    /// The column to sort by (a key the table knows; others fall back to its first).
    #[serde(default)]
    pub sort: Option<String>,
    /// `desc` for descending.
    #[serde(default)]
    pub dir: Option<String>,
    /// Only rows whose text contains this (case-insensitive).
    #[serde(default)]
    pub q: Option<String>,
    /// 1-based.
    #[serde(default)]
    pub page: Option<usize>,
}

/// A column a table sorts by: its key in the query string and its heading.
pub struct Column {
    pub key: &'static str,
    pub title: &'static str,
}

/// One page of a sorted, filtered table, with what its headings and pager link to.
pub struct Listing<T> {
    pub rows: Vec<T>,
    /// The page's path (e.g. `/services`), for links.
    pub path: String,
    pub sort: String,
    pub desc: bool,
    pub q: String,
    pub page: usize,
    pub pages: usize,
    /// Rows matching the filter, on all pages.
    pub matching: usize,
    /// Rows before filtering.
    pub total: usize,
    pub columns: Vec<ColumnLink>,
    /// This page again (what a live refresh fetches).
    pub here: String,
    /// What the filter box searches, as its placeholder says.
    pub hint: &'static str,
    pub previous: Option<String>,
    pub next: Option<String>,
}

/// A heading: its title, the link that sorts by it (or flips the direction), and how it
/// is sorted now (for `aria-sort`).
pub struct ColumnLink {
    pub title: &'static str,
    pub href: String,
    /// `ascending`, `descending` or `none`.
    pub aria_sort: &'static str,
}

impl<T> Listing<T> {
    /// The page of `rows` that `query` asks for: filtered by `text` (a row's searchable
    /// text), sorted by `key` (a row's sort key for a column key), paged.
    pub fn of<K: Ord>(
        path: &str,
        mut rows: Vec<T>,
        query: &ListQuery,
        columns: &[Column],
        text: impl Fn(&T) -> String,
        key: impl Fn(&T, &str) -> K,
    ) -> Listing<T> {
        let total = rows.len();
        let sort = sort_key(query, columns).to_owned();
        let desc = query.dir.as_deref() == Some("desc");
        let q = query.q.clone().unwrap_or_default().trim().to_owned();
        if !q.is_empty() {
            let needle = q.to_lowercase();
            rows.retain(|r| text(r).to_lowercase().contains(&needle));
        }
        rows.sort_by_cached_key(|r| key(r, &sort));
        if desc {
            rows.reverse();
        }
        let matching = rows.len();
        let page = clamp_page(query, matching);
        let rows: Vec<T> = rows
            .into_iter()
            .skip((page - 1) * PER_PAGE)
            .take(PER_PAGE)
            .collect();
        Listing::build(path, rows, columns, sort, desc, q, page, matching, total)
    }

    /// The listing of page `page` (`rows`) of `matching` rows (`total` before the
    /// filter `q`), sorted by `sort`: its heading, pager and refresh links.
    #[allow(
        clippy::too_many_arguments,
        reason = "the fields of one listing, named"
    )]
    fn build(
        path: &str,
        rows: Vec<T>,
        columns: &[Column],
        sort: String,
        desc: bool,
        q: String,
        page: usize,
        matching: usize,
        total: usize,
    ) -> Listing<T> {
        let pages = matching.div_ceil(PER_PAGE).max(1);
        let columns = columns
            .iter()
            .map(|c| {
                let current = c.key == sort;
                ColumnLink {
                    title: c.title,
                    href: link(path, c.key, current && !desc, &q, 1),
                    aria_sort: match (current, desc) {
                        (false, _) => "none",
                        (true, false) => "ascending",
                        (true, true) => "descending",
                    },
                }
            })
            .collect();
        let at = |page: usize| link(path, &sort, desc, &q, page);
        Listing {
            here: at(page),
            hint: "any text in a row",
            previous: (page > 1).then(|| at(page - 1)),
            next: (page < pages).then(|| at(page + 1)),
            rows,
            path: path.to_owned(),
            sort,
            desc,
            q,
            page,
            pages,
            matching,
            total,
            columns,
        }
    }
}

/// The page `query` asks for, within the pages `rows` rows fill (1-based).
fn clamp_page(query: &ListQuery, rows: usize) -> usize {
    query
        .page
        .unwrap_or(1)
        .clamp(1, rows.div_ceil(PER_PAGE).max(1))
}

impl<T> Listing<T> {
    /// A page the API already cut: `rows` are page `query.page` of the `matching` rows
    /// (of `total` before the filter), sorted and filtered as `query` asks (the API got
    /// [`Listing::api_query`]).
    pub fn of_page(
        path: &str,
        rows: Vec<T>,
        query: &ListQuery,
        columns: &[Column],
        matching: usize,
        total: usize,
    ) -> Listing<T> {
        let sort = sort_key(query, columns);
        let desc = query.dir.as_deref() == Some("desc");
        let q = query.q.clone().unwrap_or_default().trim().to_owned();
        let page = clamp_page(query, matching);
        Listing::build(
            path,
            rows,
            columns,
            sort.to_owned(),
            desc,
            q,
            page,
            matching,
            total,
        )
    }

    /// What a list API is asked for `query`'s page: `offset`, `limit`, `q`, `sort` (the
    /// API's name for the column, by `api_sort`) and `dir`.
    pub fn api_query(
        query: &ListQuery,
        columns: &[Column],
        api_sort: impl Fn(&str) -> &'static str,
    ) -> String {
        let offset = ((query.page.unwrap_or(1).max(1) - 1) * PER_PAGE).to_string();
        let limit = PER_PAGE.to_string();
        let mut pairs = vec![
            ("offset", offset.as_str()),
            ("limit", limit.as_str()),
            ("sort", api_sort(sort_key(query, columns))),
        ];
        if query.dir.as_deref() == Some("desc") {
            pairs.push(("dir", "desc"));
        }
        let q = query.q.as_deref().unwrap_or("").trim();
        if !q.is_empty() {
            pairs.push(("q", q));
        }
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    }
}

/// The column `query` sorts by: one of `columns`, else the first.
fn sort_key<'a>(query: &ListQuery, columns: &'a [Column]) -> &'a str {
    columns
        .iter()
        .find(|c| query.sort.as_deref() == Some(c.key))
        .or(columns.first())
        .map_or("", |c| c.key)
}

/// `path?sort=..&dir=..&q=..&page=..`.
fn link(path: &str, sort: &str, desc: bool, q: &str, page: usize) -> String {
    let page = page.to_string();
    let mut pairs = vec![("sort", sort)];
    if desc {
        pairs.push(("dir", "desc"));
    }
    if !q.is_empty() {
        pairs.push(("q", q));
    }
    pairs.push(("page", &page));
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[Column] = &[
        Column {
            key: "name",
            title: "Name",
        },
        Column {
            key: "size",
            title: "Size",
        },
    ];

    fn list(query: ListQuery) -> Listing<(String, u32)> {
        let rows = (0..120)
            .map(|i| (format!("row-{i:03}"), 1000 - i))
            .collect();
        Listing::of(
            "/things",
            rows,
            &query,
            COLUMNS,
            |r| r.0.clone(),
            |r, key| match key {
                "size" => (r.1, String::new()),
                _ => (0, r.0.clone()),
            },
        )
    }

    #[test]
    fn a_page_cut_by_the_api_links_like_one_cut_here() {
        let query = ListQuery {
            page: Some(2),
            sort: Some("size".into()),
            dir: Some("desc".into()),
            q: Some(" big ".into()),
        };
        let api = Listing::<u8>::api_query(&query, COLUMNS, |k| match k {
            "size" => "bytes",
            _ => "id",
        });
        assert_eq!(api, "offset=50&limit=50&sort=bytes&dir=desc&q=big");
        let plain = Listing::<u8>::api_query(&ListQuery::default(), COLUMNS, |_| "id");
        assert_eq!(plain, "offset=0&limit=50&sort=id");
        let page = Listing::of_page("/things", vec![1u8; PER_PAGE], &query, COLUMNS, 120, 900);
        assert_eq!(
            (page.page, page.pages, page.total, page.matching),
            (2, 3, 900, 120)
        );
        assert_eq!(
            page.previous.as_deref(),
            Some("/things?sort=size&dir=desc&q=big&page=1")
        );
        assert_eq!(page.columns[1].aria_sort, "descending");
        assert_eq!(page.columns[0].aria_sort, "none");
    }

    #[test]
    fn pages_sort_and_filter() {
        let first = list(ListQuery::default());
        assert_eq!(
            (first.rows.len(), first.pages, first.page),
            (PER_PAGE, 3, 1)
        );
        assert_eq!(first.rows[0].0, "row-000");
        assert_eq!(first.columns[0].aria_sort, "ascending");
        assert_eq!(first.columns[0].href, "/things?sort=name&dir=desc&page=1");
        let last = list(ListQuery {
            page: Some(99),
            ..Default::default()
        });
        assert_eq!((last.page, last.rows.len()), (3, 20));
        let by_size = list(ListQuery {
            sort: Some("size".into()),
            dir: Some("desc".into()),
            ..Default::default()
        });
        assert_eq!(by_size.rows[0].0, "row-000");
        let found = list(ListQuery {
            q: Some(" ROW-11 ".into()),
            sort: Some("bogus".into()),
            ..Default::default()
        });
        assert_eq!(
            (found.matching, found.total, found.sort.as_str()),
            (10, 120, "name")
        );
        assert_eq!(found.next, None);
        assert_eq!(first.next.as_deref(), Some("/things?sort=name&page=2"));
        assert_eq!(last.previous.as_deref(), Some("/things?sort=name&page=2"));
        let filtered = list(ListQuery {
            q: Some("row".into()),
            ..Default::default()
        });
        assert_eq!(
            filtered.next.as_deref(),
            Some("/things?sort=name&q=row&page=2")
        );
    }
}
