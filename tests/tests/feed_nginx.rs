//! Feeds through real nginx (`hsync_feed`, `hsync_feed_implicit`): the
//! cases of tests/src/feed.rs.

hsync_tests::feed_cases!(Nginx);
