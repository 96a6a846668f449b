"""The snapshot's SQL: keyset pages, children of a chunk, the orphan anti-join (pure string building)."""

from __future__ import annotations

import pytest

from cdc_bridge.source.snapshot import children_sql, keyset_condition, orphans_sql, page_sql, quote_ident, table_ref


def test_quoting():
    assert quote_ident("order") == "`order`"
    assert quote_ident("we`ird") == "`we``ird`"
    assert table_ref("shop.order_lines") == "`shop`.`order_lines`"


def test_keyset_single_key():
    assert keyset_condition(["id"]) == ("`id` > %s", [0])


def test_keyset_composite_key_is_written_out():
    # not (a, b) > (%s, %s): MariaDB would scan the whole index for a row comparison
    sql, index = keyset_condition(["tenant_id", "customer_no"])
    assert sql == "(`tenant_id` > %s OR (`tenant_id` = %s AND `customer_no` > %s))"
    assert index == [0, 0, 1]


def test_keyset_three_columns_with_alias_and_placeholders():
    sql, index = keyset_condition(["a", "b", "c"], ["%s", "CAST(%s AS DECIMAL(12,2))", "%s"], alias="c")
    assert sql == ("(c.`a` > %s OR (c.`a` = %s AND c.`b` > CAST(%s AS DECIMAL(12,2))) "
                   "OR (c.`a` = %s AND c.`b` = CAST(%s AS DECIMAL(12,2)) AND c.`c` > %s))")
    assert index == [0, 0, 1, 0, 1, 2]


def test_first_page_and_next_page():
    sql, index = page_sql("shop.orders", ["`id`", "`total`"], ["id"], after=False, limit=1001)
    assert sql == "SELECT `id`, `total` FROM `shop`.`orders` ORDER BY `id` LIMIT 1001" and index == []
    sql, index = page_sql("shop.orders", ["`id`", "`total`"], ["id"], after=True, limit=1001)
    assert sql == "SELECT `id`, `total` FROM `shop`.`orders` WHERE `id` > %s ORDER BY `id` LIMIT 1001"
    assert index == [0]


def test_composite_page_skips_null_keys():
    sql, index = page_sql("shop.customers", ["`tenant_id`", "`customer_no`", "CAST(`f` AS DOUBLE)"],
                          ["tenant_id", "customer_no"], after=True, limit=3, not_null=["customer_no"])
    assert sql == ("SELECT `tenant_id`, `customer_no`, CAST(`f` AS DOUBLE) FROM `shop`.`customers` "
                   "WHERE (`tenant_id` > %s OR (`tenant_id` = %s AND `customer_no` > %s)) "
                   "AND `customer_no` IS NOT NULL ORDER BY `tenant_id`, `customer_no` LIMIT 3")
    assert index == [0, 0, 1]
    sql, _ = page_sql("shop.customers", ["*"], ["k"], after=False, limit=3, not_null=["k"])
    assert sql == "SELECT * FROM `shop`.`customers` WHERE `k` IS NOT NULL ORDER BY `k` LIMIT 3"


def test_children_in_list_single_key():
    sql = children_sql("shop.order_lines", ["`id`", "`order_id`"], ["order_id"], 3, ["id"])
    assert sql == ("SELECT `id`, `order_id` FROM `shop`.`order_lines` WHERE `order_id` IN (%s, %s, %s) "
                   "ORDER BY `id`")


def test_children_in_list_composite_key():
    sql = children_sql("shop.customer_addresses", ["`address_id`"], ["tenant_id", "customer_no"], 2,
                       ["address_id"])
    assert sql == ("SELECT `address_id` FROM `shop`.`customer_addresses` WHERE (`tenant_id`, `customer_no`) "
                   "IN ((%s, %s), (%s, %s)) ORDER BY `address_id`")


def test_children_in_list_with_typed_placeholders():
    sql = children_sql("s.c", ["`x`"], ["p"], 2, ["id", "seq"], ["CAST(%s AS DECIMAL(10,2))"])
    assert sql == ("SELECT `x` FROM `s`.`c` WHERE `p` IN (CAST(%s AS DECIMAL(10,2)), CAST(%s AS DECIMAL(10,2))) "
                   "ORDER BY `id`, `seq`")
    with pytest.raises(ValueError):
        children_sql("s.c", ["`x`"], ["p"], 0, ["id"])


def test_orphans_anti_join():
    sql, index = orphans_sql("shop.order_lines", "shop.orders", ["c.`id`", "c.`order_id`"], ["order_id"], ["id"],
                             ["id"], after=False, limit=1001)
    assert sql == ("SELECT c.`id`, c.`order_id` FROM `shop`.`order_lines` AS c LEFT JOIN `shop`.`orders` AS r "
                   "ON r.`id` = c.`order_id` WHERE r.`id` IS NULL ORDER BY c.`id` LIMIT 1001")
    assert index == []
    sql, index = orphans_sql("shop.order_lines", "shop.orders", ["c.`id`"], ["order_id"], ["id"], ["id"],
                             after=True, limit=11)
    assert sql.endswith("WHERE r.`id` IS NULL AND c.`id` > %s ORDER BY c.`id` LIMIT 11") and index == [0]


def test_orphans_composite_parent_key():
    sql, index = orphans_sql("shop.customer_addresses", "shop.customers", ["c.`address_id`"],
                             ["tenant_id", "customer_no"], ["tenant_id", "customer_no"], ["address_id", "seq"],
                             after=True, limit=5, not_null=["seq"])
    assert sql == ("SELECT c.`address_id` FROM `shop`.`customer_addresses` AS c LEFT JOIN `shop`.`customers` AS r "
                   "ON r.`tenant_id` = c.`tenant_id` AND r.`customer_no` = c.`customer_no` "
                   "WHERE r.`tenant_id` IS NULL AND c.`seq` IS NOT NULL "
                   "AND (c.`address_id` > %s OR (c.`address_id` = %s AND c.`seq` > %s)) "
                   "ORDER BY c.`address_id`, c.`seq` LIMIT 5")
    assert index == [0, 0, 1]
