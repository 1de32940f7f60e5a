//! Paginated lists: `?page=1&per_page=50` in, `{data, page, per_page, total}` out.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

pub const MAX_PER_PAGE: u64 = 500;
/// Highest page number: far past any real list, and low enough that the row offset it
/// makes stays a valid SQL integer.
pub const MAX_PAGE: u64 = 1_000_000_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-based page number (default 1).
    pub page: Option<u64>,
    /// Items per page, 1 to 500 (default 50).
    pub per_page: Option<u64>,
}

impl PageQuery {
    /// The page and page size, checked.
    pub fn resolve(&self) -> Result<(u64, u64), ApiError> {
        resolve(self.page, self.per_page)
    }
}

/// A requested page and page size, with defaults, checked.
pub fn resolve(page: Option<u64>, per_page: Option<u64>) -> Result<(u64, u64), ApiError> {
    let page = page.unwrap_or(1);
    let per_page = per_page.unwrap_or(50);
    if page == 0 || page > MAX_PAGE {
        return Err(ApiError::invalid(
            "page",
            format!("must be 1 to {MAX_PAGE}"),
        ));
    }
    if per_page == 0 || per_page > MAX_PER_PAGE {
        return Err(ApiError::invalid(
            "per_page",
            format!("must be 1 to {MAX_PER_PAGE}"),
        ));
    }
    Ok((page, per_page))
}

impl<T> Page<T> {
    /// A page of views made from stored records.
    pub fn of<R: Into<T>>(items: Vec<R>, page: u64, per_page: u64, total: u64) -> Self {
        Page {
            data: items.into_iter().map(Into::into).collect(),
            page,
            per_page,
            total,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub page: u64,
    pub per_page: u64,
    /// How many items match in all pages.
    pub total: u64,
}
