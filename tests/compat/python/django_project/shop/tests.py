from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.test import TestCase, TransactionTestCase

from shop.models import Product, Sale


class SaleTests(TestCase):
    def test_seeded_and_sum(self):
        widget = Product.objects.get(name="widget")
        Sale.objects.create(product=widget, quantity=3)
        Sale.objects.create(product=widget, quantity=4)
        self.assertEqual(Sale.objects.aggregate(n=Sum("quantity"))["n"], 7)
        self.assertEqual(Product.objects.count(), 2)

    def test_unique_violation_in_savepoint(self):
        with self.assertRaises(IntegrityError):
            with transaction.atomic():
                Product.objects.create(name="widget", price="1.00")
        self.assertEqual(Product.objects.filter(name="widget").count(), 1)


class FlushTests(TransactionTestCase):
    def test_create_then_flush(self):
        Product.objects.create(name="gizmo", price="3.00")
        self.assertTrue(Product.objects.filter(name="gizmo").exists())
