from django.db import migrations


def seed(apps, schema_editor):
    Product = apps.get_model("shop", "Product")
    Product.objects.create(name="widget", price="2.50")
    Product.objects.create(name="gadget", price="10.00")


def unseed(apps, schema_editor):
    apps.get_model("shop", "Product").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
