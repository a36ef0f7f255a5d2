//! Feeds through real Apache httpd (`HsyncFeed`, `HsyncFeedImplicit`): the
//! cases of tests/src/feed.rs.

hsync_tests::feed_cases!(Apache);
